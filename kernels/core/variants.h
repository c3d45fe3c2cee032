// Declarations of every kernel variant listed in kernels.inc, and the per-ISA dispatch table.
#pragma once
#include "jobs.h"

#if defined(__x86_64__) || defined(_M_X64)
#define ST_ARCH_x86 1
#else
#define ST_ARCH_x86 0
#endif
#if defined(__aarch64__)
#define ST_ARCH_arm 1
#else
#define ST_ARCH_arm 0
#endif
#define ST_ARCH_any 1

#define ST_CAT_(a, b) a##b
#define ST_CAT(a, b) ST_CAT_(a, b)
// ST_WHEN(arch)(tokens): tokens only where arch is compiled in.
#define ST_WHEN(arch) ST_CAT(ST_WHEN_, ST_CAT(ST_ARCH_, arch))
#define ST_WHEN_1(...) __VA_ARGS__
#define ST_WHEN_0(...)

namespace st {
#define ST_VARIANT(op, format, isa, arch) ST_WHEN(arch)(void op##_##format##_##isa(ST_KSIG_##op);)
#include "../kernels.inc"
#undef ST_VARIANT

struct IsaTable {
  const char* isa;
  ConvKernel conv2d_csr = nullptr;
  ConvKernel conv2d_bsr4x1 = nullptr;
  DwKernel dwconv2d_csr = nullptr;
  DwKernel dwconv2d_dense = nullptr;
  LinearKernel linear_csr = nullptr;
  LinearKernel linear_dense = nullptr;
  // conv2d_csr runs kx-split jobs (ConvJob::kxseg) with rows padded to this many floats (the
  // vector width); 0: not supported. ISAs whose traits have shift_in (simd.h).
  int32_t csr_kx_split = 0;
};

// The table in use; throws nothing, returns null and sets the thread error if the forced ISA
// (ST_KERNELS_ISA or st_set_isa) cannot run here.
const IsaTable* active_table();
// Counts changes of the settings a conv plan depends on (ISA, 1x1 path): a plan made under an
// older value plans again per call rather than run stale choices.
uint64_t config_generation();
void bump_config_generation();
}  // namespace st
