// tvm-ffi entry points. Destination-passing style (output last) so TVM Relax can call them with
// R.call_dps_packed("st_deploy.<name>", ...). Registered as globals "st_deploy.<name>" and also
// exported as module symbols <name> for tvm_ffi.load_module(...).<name>.
// Every tensor is checked (device, dtype, rank, shape, contiguity) before the C layer, which then
// validates the sparse pattern itself (conv2d_csr/bsr: when it makes the layer's plan, kept while
// the same arrays come back unchanged, see cached_plan); faults become tvm-ffi ValueError /
// RuntimeError.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>
#include <tvm/ffi/reflection/registry.h>
#include <tvm/ffi/string.h>

#include <dlfcn.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "../include/st_kernels.h"

namespace st_ffi {
using tvm::ffi::Array;
using tvm::ffi::Optional;
using tvm::ffi::String;
using tvm::ffi::TensorView;

std::string shape_str(const TensorView& t) {
  std::ostringstream os;
  os << "(";
  for (int i = 0; i < t.ndim(); ++i) os << (i ? ", " : "") << t.size(i);
  os << (t.ndim() == 1 ? ",)" : ")");
  return os.str();
}

// Checks CPU placement, dtype (float32 or int32), rank and contiguity; returns the data pointer.
template <class T>
T* data(const char* op, const char* name, const TensorView& t, int ndim) {
  const DLDataType dt = t.dtype();
  const bool want_float = std::is_same<std::remove_const_t<T>, float>::value;
  const uint8_t code = want_float ? kDLFloat : kDLInt;
  if (t.device().device_type != kDLCPU)
    TVM_FFI_THROW(ValueError) << op << ": " << name << " must be on the CPU";
  if (dt.code != code || dt.bits != 32 || dt.lanes != 1)
    TVM_FFI_THROW(ValueError) << op << ": " << name << " must be " << (want_float ? "float32" : "int32")
                              << ", got " << tvm::ffi::DLDataTypeToString(dt);
  if (ndim >= 0 && t.ndim() != ndim)
    TVM_FFI_THROW(ValueError) << op << ": " << name << " must have " << ndim << " dims, got shape "
                              << shape_str(t);
  if (!t.IsContiguous())
    TVM_FFI_THROW(ValueError) << op << ": " << name << " must be contiguous (C order)";
  return reinterpret_cast<T*>(static_cast<char*>(t.data_ptr()) + t.byte_offset());
}

void expect_shape(const char* op, const char* name, const TensorView& t, const std::vector<int64_t>& s) {
  bool ok = t.ndim() == static_cast<int>(s.size());
  for (size_t i = 0; ok && i < s.size(); ++i) ok = t.size(i) == s[i];
  if (!ok) {
    std::ostringstream want;
    want << "(";
    for (size_t i = 0; i < s.size(); ++i) want << (i ? ", " : "") << s[i];
    want << ")";
    TVM_FFI_THROW(ValueError) << op << ": " << name << " has shape " << shape_str(t) << ", expected "
                              << want.str();
  }
}

int32_t to_i32(const char* op, const char* name, int64_t v) {
  if (v < INT32_MIN || v > INT32_MAX) TVM_FFI_THROW(ValueError) << op << ": " << name << " out of range";
  return static_cast<int32_t>(v);
}

void check_rc(int rc) {
  if (rc == ST_OK) return;
  if (rc == ST_EINVAL) TVM_FFI_THROW(ValueError) << st_last_error();
  TVM_FFI_THROW(RuntimeError) << st_last_error();
}

struct ConvArgs {
  st_conv2d_shape s{};
  const float* x;
  const float* bias = nullptr;
  const float* res = nullptr;
  float* out;
};

// Shape checks shared by the conv ops; cout comes from out.shape[1].
ConvArgs conv_args(const char* op, const TensorView& x, const Optional<TensorView>& bias,
                   const Optional<TensorView>& residual, int64_t kh, int64_t kw, int64_t stride,
                   int64_t pad, int64_t act, const TensorView& out) {
  ConvArgs a;
  a.x = data<const float>(op, "x", x, 4);
  a.out = data<float>(op, "out", out, 4);
  a.s.n = to_i32(op, "x.shape[0]", x.size(0));
  a.s.cin = to_i32(op, "x.shape[1]", x.size(1));
  a.s.h = to_i32(op, "x.shape[2]", x.size(2));
  a.s.w = to_i32(op, "x.shape[3]", x.size(3));
  a.s.cout = to_i32(op, "out.shape[1]", out.size(1));
  a.s.kh = to_i32(op, "kernel_h", kh);
  a.s.kw = to_i32(op, "kernel_w", kw);
  a.s.stride = to_i32(op, "stride", stride);
  a.s.pad = to_i32(op, "pad", pad);
  a.s.act = to_i32(op, "act", act);
  if (kh < 1 || kw < 1 || stride < 1 || pad < 0)
    TVM_FFI_THROW(ValueError) << op << ": need kernel >= 1, stride >= 1, pad >= 0 (got kernel " << kh
                              << "x" << kw << ", stride " << stride << ", pad " << pad << ")";
  const int64_t oh = (x.size(2) + 2 * pad - kh) / stride + 1, ow = (x.size(3) + 2 * pad - kw) / stride + 1;
  if (x.size(2) + 2 * pad < kh || x.size(3) + 2 * pad < kw)
    TVM_FFI_THROW(ValueError) << op << ": kernel " << kh << "x" << kw << " larger than padded input";
  expect_shape(op, "out", out, {x.size(0), out.size(1), oh, ow});
  if (bias.has_value()) {
    a.bias = data<const float>(op, "bias", *bias, 1);
    expect_shape(op, "bias", *bias, {out.size(1)});
  }
  if (residual.has_value()) {
    a.res = data<const float>(op, "residual", *residual, 4);
    expect_shape(op, "residual", *residual, {x.size(0), out.size(1), oh, ow});
  }
  return a;
}

// Plans for the per-call entry points. TVM's call_dps_packed hands a layer the same constant
// weight tensors on every run: keyed by the arrays' addresses and the shape, a plan found here is
// used only if its own copy still equals the arrays (st_conv2d_plan_matches, a byte compare that
// costs less than the checks it saves), so reused or modified memory never runs a stale plan.
struct PlanKey {
  const void *ip, *ix, *v;
  int32_t block;
  st_conv2d_shape s;
  bool operator==(const PlanKey& o) const { return std::memcmp(this, &o, sizeof(PlanKey)) == 0; }
};
struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    size_t h = 1469598103934665603ull;
    const unsigned char* b = reinterpret_cast<const unsigned char*>(&k);
    for (size_t i = 0; i < sizeof(PlanKey); ++i) h = (h ^ b[i]) * 1099511628211ull;
    return h;
  }
};

std::shared_ptr<st_conv2d_plan> cached_plan(int32_t block, const st_conv2d_shape& shape, const int32_t* ip,
                                            int64_t nip, const int32_t* ix, int64_t nix, const float* v,
                                            int64_t nv) {
  static std::mutex mu;
  static std::unordered_map<PlanKey, std::shared_ptr<st_conv2d_plan>, PlanKeyHash> cache;
  PlanKey key;
  std::memset(&key, 0, sizeof(key));  // padding bytes take part in == and the hash
  key.ip = ip;
  key.ix = ix;
  key.v = v;
  key.block = block;
  key.s = shape;
  key.s.n = 1;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end() && st_conv2d_plan_matches(it->second.get(), block, &key.s, ip, nip, ix, nix, v, nv))
      return it->second;
  }
  st_conv2d_plan* made = nullptr;
  check_rc(st_conv2d_plan_create(block, &key.s, ip, nip, ix, nix, v, nv, &made));
  std::shared_ptr<st_conv2d_plan> plan(made, st_conv2d_plan_free);
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() >= 512) cache.clear();  // many distinct layers (tests, fuzzing): start over
  cache[key] = plan;
  return plan;
}

void conv2d_csr(TensorView x, TensorView indptr, TensorView indices, TensorView values,
                Optional<TensorView> bias, Optional<TensorView> residual, int64_t kh, int64_t kw,
                int64_t stride, int64_t pad, int64_t act, TensorView out) {
  const char* op = "st_deploy.conv2d_csr";
  ConvArgs a = conv_args(op, x, bias, residual, kh, kw, stride, pad, act, out);
  const int32_t* ip = data<const int32_t>(op, "indptr", indptr, 1);
  const int32_t* ix = data<const int32_t>(op, "indices", indices, 1);
  const float* v = data<const float>(op, "values", values, 1);
  auto plan = cached_plan(1, a.s, ip, indptr.size(0), ix, indices.size(0), v, values.size(0));
  check_rc(st_conv2d_plan_run(plan.get(), a.s.n, a.x, a.bias, a.res, a.out));
}

void conv2d_bsr(TensorView x, TensorView indptr, TensorView indices, TensorView values,
                Optional<TensorView> bias, Optional<TensorView> residual, int64_t kh, int64_t kw,
                int64_t stride, int64_t pad, int64_t act, int64_t block_rows, TensorView out) {
  const char* op = "st_deploy.conv2d_bsr";
  if (block_rows != 4)
    TVM_FFI_THROW(ValueError) << op << ": only 4x1 blocks (block_rows = 4) are implemented, got "
                              << block_rows;
  ConvArgs a = conv_args(op, x, bias, residual, kh, kw, stride, pad, act, out);
  const int32_t* ip = data<const int32_t>(op, "indptr", indptr, 1);
  const int32_t* ix = data<const int32_t>(op, "indices", indices, 1);
  const float* v = data<const float>(op, "values", values, -1);
  if (!(values.ndim() == 1 || (values.ndim() == 2 && values.size(1) == 4) ||
        (values.ndim() == 3 && values.size(1) == 4 && values.size(2) == 1)))
    TVM_FFI_THROW(ValueError) << op << ": values must be (nnzb * 4,), (nnzb, 4) or (nnzb, 4, 1), got "
                              << shape_str(values);
  auto plan = cached_plan(4, a.s, ip, indptr.size(0), ix, indices.size(0), v, values.numel());
  check_rc(st_conv2d_plan_run(plan.get(), a.s.n, a.x, a.bias, a.res, a.out));
}

void dwconv2d(TensorView x, TensorView weight, Optional<TensorView> bias,
              Optional<TensorView> residual, int64_t stride, int64_t pad, int64_t act, TensorView out) {
  const char* op = "st_deploy.dwconv2d";
  const float* w = data<const float>(op, "weight", weight, 4);
  const int64_t k = weight.size(2);
  expect_shape(op, "weight", weight, {x.size(1), 1, k, k});
  ConvArgs a = conv_args(op, x, bias, residual, k, k, stride, pad, act, out);
  check_rc(st_dwconv2d_dense(&a.s, a.x, w, a.bias, a.res, a.out));
}

void dwconv2d_csr(TensorView x, TensorView indptr, TensorView indices, TensorView values,
                  Optional<TensorView> bias, Optional<TensorView> residual, int64_t k,
                  int64_t stride, int64_t pad, int64_t act, TensorView out) {
  const char* op = "st_deploy.dwconv2d_csr";
  ConvArgs a = conv_args(op, x, bias, residual, k, k, stride, pad, act, out);
  const int32_t* ip = data<const int32_t>(op, "indptr", indptr, 1);
  const int32_t* ix = data<const int32_t>(op, "indices", indices, 1);
  const float* v = data<const float>(op, "values", values, 1);
  check_rc(st_dwconv2d_csr(&a.s, a.x, ip, indptr.size(0), ix, indices.size(0), v, values.size(0),
                           a.bias, a.res, a.out));
}

void linear_csr(TensorView x, TensorView indptr, TensorView indices, TensorView values,
                Optional<TensorView> bias, int64_t act, TensorView out) {
  const char* op = "st_deploy.linear_csr";
  const float* xp = data<const float>(op, "x", x, 2);
  float* o = data<float>(op, "out", out, 2);
  expect_shape(op, "out", out, {x.size(0), out.size(1)});
  const float* b = nullptr;
  if (bias.has_value()) {
    b = data<const float>(op, "bias", *bias, 1);
    expect_shape(op, "bias", *bias, {out.size(1)});
  }
  const int32_t* ip = data<const int32_t>(op, "indptr", indptr, 1);
  const int32_t* ix = data<const int32_t>(op, "indices", indices, 1);
  const float* v = data<const float>(op, "values", values, 1);
  check_rc(st_linear_csr(to_i32(op, "batch", x.size(0)), to_i32(op, "in_features", x.size(1)),
                         to_i32(op, "out_features", out.size(1)), xp, ip, indptr.size(0), ix,
                         indices.size(0), v, values.size(0), b, to_i32(op, "act", act), o));
}

void linear_dense(TensorView x, TensorView weight, Optional<TensorView> bias, int64_t act, TensorView out) {
  const char* op = "st_deploy.linear_dense";
  const float* xp = data<const float>(op, "x", x, 2);
  float* o = data<float>(op, "out", out, 2);
  const float* w = data<const float>(op, "weight", weight, 2);
  expect_shape(op, "weight", weight, {out.size(1), x.size(1)});
  expect_shape(op, "out", out, {x.size(0), out.size(1)});
  const float* b = nullptr;
  if (bias.has_value()) {
    b = data<const float>(op, "bias", *bias, 1);
    expect_shape(op, "bias", *bias, {out.size(1)});
  }
  check_rc(st_linear_dense(to_i32(op, "batch", x.size(0)), to_i32(op, "in_features", x.size(1)),
                           to_i32(op, "out_features", out.size(1)), xp, w, weight.numel(), b,
                           to_i32(op, "act", act), o));
}

// out = act(x) (+ residual) elementwise, any st_act code (the activations no kernel epilogue applies).
void activate(TensorView x, Optional<TensorView> residual, int64_t act, TensorView out) {
  const char* op = "st_deploy.activate";
  const float* xp = data<const float>(op, "x", x, x.ndim());
  float* o = data<float>(op, "out", out, x.ndim());
  if (out.numel() != x.numel()) TVM_FFI_THROW(ValueError) << op << ": out has " << out.numel() << " elements, x " << x.numel();
  const float* r = nullptr;
  if (residual.has_value()) {
    r = data<const float>(op, "residual", *residual, x.ndim());
    if ((*residual).numel() != x.numel()) TVM_FFI_THROW(ValueError) << op << ": residual size differs from x";
  }
  check_rc(st_activate(xp, r, o, x.numel(), to_i32(op, "act", act)));
}

void validate_sparse(TensorView indptr, TensorView indices, int64_t rows, int64_t cols,
                     int64_t block_rows, int64_t values_len) {
  const char* op = "st_deploy.validate_sparse";
  const int32_t* ip = data<const int32_t>(op, "indptr", indptr, 1);
  const int32_t* ix = data<const int32_t>(op, "indices", indices, 1);
  check_rc(st_validate_sparse(to_i32(op, "rows", rows), to_i32(op, "cols", cols),
                              to_i32(op, "block_rows", block_rows), ip, indptr.size(0), ix,
                              indices.size(0), values_len));
}

String isa() {
  const char* name = st_isa();
  if (std::string(name) == "none") check_rc(ST_EUNSUPPORTED);
  return String(name);
}
bool isa_available(String name) { return st_isa_available(name.c_str()) != 0; }
void set_isa(String name) { check_rc(st_set_isa(name.c_str())); }
void set_conv1x1_path(String path) { check_rc(st_set_conv1x1_path(path.c_str())); }
String conv1x1_path() { return String(st_conv1x1_path()); }
void set_num_threads(int64_t n) { check_rc(st_set_num_threads(to_i32("set_num_threads", "n", n))); }
int64_t get_num_threads() { return st_get_num_threads(); }
// TVM's parallel launcher, looked up when asked for (not bound at load: the Python package's
// own library may be loaded before any TVM runtime is).
struct TvmParallelEnv {
  void* sync_handle;
  int32_t num_task;
};
using TvmLambda = int (*)(int, TvmParallelEnv*, void*);
using TvmLaunch = int (*)(TvmLambda flambda, void* cdata, int num_task);
std::atomic<TvmLaunch> g_tvm_launch{nullptr};

struct HostTasks {
  st_task_fn fn;
  void* arg;
};

int tvm_launch(int32_t, st_task_fn fn, void* arg) {
  HostTasks tasks{fn, arg};
  // num_task 0: one task per thread of the calling thread's TVM pool; each drains the shared
  // task counter behind `arg` (st::parallel_for), so the kernels' task count need not match.
  g_tvm_launch.load()(
      [](int task, TvmParallelEnv*, void* cdata) {
        auto* t = static_cast<HostTasks*>(cdata);
        t->fn(task, t->arg);
        return 0;
      },
      &tasks, 0);
  return 0;  // even after a failed launch: st::parallel_for runs the unclaimed tasks on the caller
}

// true: the kernels run their parallel loops on TVM's thread pool; false: on st_kernels' own.
// Returns whether TVM's pool is in use (false when asked for in a process without a TVM runtime).
bool use_host_pool(bool on) {
  TvmLaunch launch = on ? reinterpret_cast<TvmLaunch>(dlsym(RTLD_DEFAULT, "TVMBackendParallelLaunch")) : nullptr;
  g_tvm_launch.store(launch);
  check_rc(st_set_parallel_launcher(launch != nullptr ? tvm_launch : nullptr));
  return launch != nullptr;
}

void set_spin_us(int64_t us) { check_rc(st_set_spin_us(to_i32("set_spin_us", "us", us))); }
int64_t get_spin_us() { return st_get_spin_us(); }
Array<String> variants() {
  Array<String> out;
  for (int32_t i = 0; i < st_variant_count(); ++i) {
    int32_t built = 0;
    const char* name = st_variant_name(i, &built);
    if (built) out.push_back(String(name));
  }
  return out;
}
}  // namespace st_ffi

TVM_FFI_DLL_EXPORT_TYPED_FUNC(conv2d_csr, st_ffi::conv2d_csr);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(conv2d_bsr, st_ffi::conv2d_bsr);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(dwconv2d, st_ffi::dwconv2d);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(dwconv2d_csr, st_ffi::dwconv2d_csr);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(linear_csr, st_ffi::linear_csr);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(linear_dense, st_ffi::linear_dense);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(activate, st_ffi::activate);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(validate_sparse, st_ffi::validate_sparse);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(isa, st_ffi::isa);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(isa_available, st_ffi::isa_available);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(set_isa, st_ffi::set_isa);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(set_num_threads, st_ffi::set_num_threads);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(set_conv1x1_path, st_ffi::set_conv1x1_path);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(conv1x1_path, st_ffi::conv1x1_path);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(get_num_threads, st_ffi::get_num_threads);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(set_spin_us, st_ffi::set_spin_us);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(use_host_pool, st_ffi::use_host_pool);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(get_spin_us, st_ffi::get_spin_us);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(variants, st_ffi::variants);

#ifndef ST_KERNELS_FFI_NO_GLOBALS
// Conv plans (st_conv2d_plan_*) as tvm-ffi objects: the Python layers make one per input size and
// the object's lifetime frees it. Only in libst_kernels.so: a model.so copy of this file would
// register the type a second time.
namespace st_ffi {
class ConvPlanObj : public tvm::ffi::Object {
 public:
  st_conv2d_plan* plan = nullptr;
  int64_t cin = 0, h = 0, w = 0, cout = 0, oh = 0, ow = 0;
  ~ConvPlanObj() { st_conv2d_plan_free(plan); }
  TVM_FFI_DECLARE_OBJECT_INFO_FINAL("st_deploy.ConvPlan", ConvPlanObj, tvm::ffi::Object);
};
class ConvPlan : public tvm::ffi::ObjectRef {
 public:
  explicit ConvPlan(tvm::ffi::ObjectPtr<ConvPlanObj> n) : tvm::ffi::ObjectRef(std::move(n)) {}
  TVM_FFI_DEFINE_OBJECT_REF_METHODS_NOTNULLABLE(ConvPlan, tvm::ffi::ObjectRef, ConvPlanObj);
};

ConvPlan conv2d_plan(TensorView indptr, TensorView indices, TensorView values, int64_t block_rows,
                     int64_t cin, int64_t h, int64_t w, int64_t cout, int64_t kh, int64_t kw,
                     int64_t stride, int64_t pad, int64_t act) {
  const char* op = "st_deploy.conv2d_plan";
  const int32_t* ip = data<const int32_t>(op, "indptr", indptr, 1);
  const int32_t* ix = data<const int32_t>(op, "indices", indices, 1);
  const float* v = data<const float>(op, "values", values, -1);
  st_conv2d_shape s{};
  s.n = 1;
  s.cin = to_i32(op, "cin", cin);
  s.h = to_i32(op, "h", h);
  s.w = to_i32(op, "w", w);
  s.cout = to_i32(op, "cout", cout);
  s.kh = to_i32(op, "kernel_h", kh);
  s.kw = to_i32(op, "kernel_w", kw);
  s.stride = to_i32(op, "stride", stride);
  s.pad = to_i32(op, "pad", pad);
  s.act = to_i32(op, "act", act);
  auto obj = tvm::ffi::make_object<ConvPlanObj>();
  check_rc(st_conv2d_plan_create(to_i32(op, "block_rows", block_rows), &s, ip, indptr.size(0), ix,
                                 indices.size(0), v, values.numel(), &obj->plan));
  int32_t oh = 0, ow = 0;
  check_rc(st_conv2d_plan_output(obj->plan, &oh, &ow));
  obj->cin = cin;
  obj->h = h;
  obj->w = w;
  obj->cout = cout;
  obj->oh = oh;
  obj->ow = ow;
  return ConvPlan(std::move(obj));
}

void conv2d_plan_run(ConvPlan plan, TensorView x, Optional<TensorView> bias,
                     Optional<TensorView> residual, TensorView out) {
  const char* op = "st_deploy.conv2d_plan_run";
  const ConvPlanObj* p = plan.get();
  const float* xp = data<const float>(op, "x", x, 4);
  float* o = data<float>(op, "out", out, 4);
  expect_shape(op, "x", x, {x.size(0), p->cin, p->h, p->w});
  expect_shape(op, "out", out, {x.size(0), p->cout, p->oh, p->ow});
  const float* b = nullptr;
  const float* r = nullptr;
  if (bias.has_value()) {
    b = data<const float>(op, "bias", *bias, 1);
    expect_shape(op, "bias", *bias, {p->cout});
  }
  if (residual.has_value()) {
    r = data<const float>(op, "residual", *residual, 4);
    expect_shape(op, "residual", *residual, {x.size(0), p->cout, p->oh, p->ow});
  }
  check_rc(st_conv2d_plan_run(p->plan, to_i32(op, "x.shape[0]", x.size(0)), xp, b, r, o));
}
}  // namespace st_ffi

TVM_FFI_DLL_EXPORT_TYPED_FUNC(conv2d_plan, st_ffi::conv2d_plan);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(conv2d_plan_run, st_ffi::conv2d_plan_run);
#endif  // ST_KERNELS_FFI_NO_GLOBALS

// -DST_KERNELS_FFI_NO_GLOBALS compiles the global registrations out (a TVM model.so that links this
// object must not register globals that libst_kernels.so, loaded in the same process, registers too).
#ifndef ST_KERNELS_FFI_NO_GLOBALS
TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::GlobalDef()
      .def("st_deploy.conv2d_csr", st_ffi::conv2d_csr)
      .def("st_deploy.conv2d_bsr", st_ffi::conv2d_bsr)
      .def("st_deploy.dwconv2d", st_ffi::dwconv2d)
      .def("st_deploy.dwconv2d_csr", st_ffi::dwconv2d_csr)
      .def("st_deploy.linear_csr", st_ffi::linear_csr)
      .def("st_deploy.linear_dense", st_ffi::linear_dense)
      .def("st_deploy.validate_sparse", st_ffi::validate_sparse)
      .def("st_deploy.kernels_isa", st_ffi::isa)
      .def("st_deploy.kernels_set_isa", st_ffi::set_isa)
      .def("st_deploy.kernels_set_num_threads", st_ffi::set_num_threads);
}
#endif  // ST_KERNELS_FFI_NO_GLOBALS
