// Picks the kernel table from CPU features, or the one forced by ST_KERNELS_ISA / st_set_isa.
// A forced ISA the CPU cannot run is an error on every call, never a silent fallback.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "../include/st_kernels.h"
#include "errors.h"
#include "threadpool.h"
#include "variants.h"

namespace st {
namespace {

const char* const kIsaOrder[] = {"avx512", "avx2", "neon", "scalar"};

bool cpu_has(const std::string& isa) {
#if ST_ARCH_x86
  __builtin_cpu_init();
  if (isa == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma");
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if ST_ARCH_arm
  if (isa == "neon") return true;  // Advanced SIMD is mandatory on AArch64.
#endif
  return isa == "scalar";
}

IsaTable build(const std::string& isa) {
  IsaTable t;
  t.isa = nullptr;
  for (const char* name : kIsaOrder)
    if (isa == name) t.isa = name;
#define ST_VARIANT(op, format, visa, arch) \
  ST_WHEN(arch)(if (isa == #visa) t.op##_##format = &op##_##format##_##visa;)
#include "../kernels.inc"
#undef ST_VARIANT
  // Must match the ISAs whose simd.h traits define kShiftIn (conv2d-csr.h fails a kx-split job
  // on any other, it never computes it wrongly).
  t.csr_kx_split = isa == "avx512" ? 16 : 0;
  return t;
}

bool complete(const IsaTable& t) {
  return t.isa && t.conv2d_csr && t.conv2d_bsr4x1 && t.dwconv2d_csr && t.dwconv2d_dense && t.linear_csr &&
         t.linear_dense;
}

struct State {
  std::mutex m;
  IsaTable table;
  std::string error;  // non-empty: the forced ISA cannot run
  bool ready = false;
};
State& state() {
  static State s;
  return s;
}

int select_locked(State& s, const std::string& want) {
  if (want.empty() || want == "auto") {
    for (const char* name : kIsaOrder) {
      IsaTable t = build(name);
      if (complete(t) && cpu_has(name)) {
        s.table = t;
        s.error.clear();
        s.ready = true;
        return ST_OK;
      }
    }
    s.error = "no kernel variant can run on this CPU (library built without a scalar variant?)";
    s.ready = true;
    return ST_EUNSUPPORTED;
  }
  IsaTable t = build(want);
  if (!complete(t)) {
    s.error = "ISA '" + want + "' is not built into this library (built: ";
    bool first = true;
    for (const char* name : kIsaOrder)
      if (complete(build(name))) {
        s.error += (first ? "" : ", ") + std::string(name);
        first = false;
      }
    s.error += ")";
  } else if (!cpu_has(want)) {
    s.error = "ISA '" + want + "' was requested but this CPU does not support it";
  } else {
    s.table = t;
    s.error.clear();
  }
  s.ready = true;
  return s.error.empty() ? ST_OK : ST_EUNSUPPORTED;
}
}  // namespace

namespace {
std::atomic<uint64_t> g_config{0};
}
uint64_t config_generation() { return g_config.load(std::memory_order_acquire); }
void bump_config_generation() { g_config.fetch_add(1, std::memory_order_acq_rel); }

const IsaTable* active_table() {
  State& s = state();
  std::lock_guard<std::mutex> l(s.m);
  if (!s.ready) {
    const char* env = std::getenv("ST_KERNELS_ISA");
    if (select_locked(s, env ? env : "auto") != ST_OK && env) s.error += " (from ST_KERNELS_ISA)";
  }
  if (!s.error.empty()) {
    set_error(s.error);
    return nullptr;
  }
  return &s.table;
}
}  // namespace st

extern "C" {

const char* st_isa(void) {
  const st::IsaTable* t = st::active_table();
  return t ? t->isa : "none";
}

int st_isa_available(const char* isa) {
  if (!isa) return 0;
  return st::complete(st::build(isa)) && st::cpu_has(isa) ? 1 : 0;
}

int st_set_isa(const char* isa) {
  st::clear_error();
  st::State& s = st::state();
  std::lock_guard<std::mutex> l(s.m);
  int rc = st::select_locked(s, isa ? isa : "auto");
  st::bump_config_generation();
  if (rc != ST_OK) {
    st::set_error(s.error);
    // Keep running what ran before (or the best available if nothing was chosen yet): an explicit
    // request that fails is reported to its caller and must not leave the library unusable.
    s.error.clear();
    if (!st::complete(s.table)) st::select_locked(s, "auto");
  }
  return rc;
}

int st_set_num_threads(int32_t n) {
  st::clear_error();
  if (n < 1) return st::Fail(ST_EINVAL) << "number of threads must be >= 1, got " << n;
  st::set_num_threads(n);
  return ST_OK;
}

int32_t st_get_num_threads(void) { return st::num_threads(); }

int st_set_spin_us(int32_t us) {
  st::clear_error();
  if (us < 0 || us > 1000000) return st::Fail(ST_EINVAL) << "spin time must be in [0, 1000000] us, got " << us;
  st::set_spin_us(us);
  return ST_OK;
}

int32_t st_get_spin_us(void) { return st::spin_us(); }

int st_set_parallel_launcher(st_parallel_launcher launch) {
  st::clear_error();
  st::set_launcher(launch);
  return ST_OK;
}

// Variant listing from kernels.inc, for tests and benchmarks.
int32_t st_variant_count(void) {
  int32_t n = 0;
#define ST_VARIANT(op, format, isa, arch) ++n;
#include "../kernels.inc"
#undef ST_VARIANT
  return n;
}

// "op-format-isa" of variant i, or null; *built = 1 if compiled into this library.
const char* st_variant_name(int32_t i, int32_t* built) {
  static const char* const names[] = {
#define ST_VARIANT(op, format, isa, arch) #op "-" #format "-" #isa,
#include "../kernels.inc"
#undef ST_VARIANT
  };
  static const int32_t built_flags[] = {
#define ST_VARIANT(op, format, isa, arch) ST_ARCH_##arch,
#include "../kernels.inc"
#undef ST_VARIANT
  };
  if (i < 0 || i >= st_variant_count()) return nullptr;
  if (built) *built = built_flags[i];
  return names[i];
}
}
