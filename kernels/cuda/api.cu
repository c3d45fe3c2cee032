// Host entry points of st_kernels_cuda.h: argument checks (reusing the CPU core's shape and
// pattern checks), the device guard, the sticky error flag in mapped pinned memory, launches.
#include <atomic>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "../core/conv_shape.h"
#include "../core/validate.h"
#include "../include/st_kernels_cuda.h"
#include "common.cuh"

namespace stc {
namespace {

thread_local std::string g_error;

struct Fail {
  int code;
  std::ostringstream os;
  explicit Fail(int c) : code(c) {}
  template <class T>
  Fail& operator<<(const T& v) {
    os << v;
    return *this;
  }
  operator int() {
    g_error = os.str();
    return code;
  }
};

// The CPU core's checks report through st_last_error(); move the message over.
int from_cpu(int rc) {
  if (rc != ST_OK) g_error = st_last_error();
  return rc;
}

int cuda_fail(const char* what, cudaError_t e) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  return Fail(ST_EINTERNAL) << what << ": CUDA error " << cudaGetErrorName(e) << ": "
                            << cudaGetErrorString(e);
}

// Makes `device` current for the scope (device < 0: keep the current one).
struct DeviceGuard {
  int prev = -1;
  bool changed = false;
  cudaError_t err = cudaSuccess;
  explicit DeviceGuard(int device) {
    if (device < 0) return;
    err = cudaGetDevice(&prev);
    if (err == cudaSuccess && prev != device) {
      err = cudaSetDevice(device);
      changed = err == cudaSuccess;
    }
  }
  ~DeviceGuard() {
    if (changed) cudaSetDevice(prev);
  }
};

// The error flag: one ErrFlag of mapped, portable pinned host memory shared by all devices
// (64-bit CUDA has unified addressing: the device pointer works on every device).
std::mutex g_flag_mu;
std::atomic<ErrFlag*> g_flag_host{nullptr};
ErrFlag* g_flag_dev = nullptr;

cudaError_t ensure_flag(ErrFlag** dev) {
  if (g_flag_host.load(std::memory_order_acquire)) {
    *dev = g_flag_dev;
    return cudaSuccess;
  }
  std::lock_guard<std::mutex> lock(g_flag_mu);
  if (!g_flag_host.load(std::memory_order_relaxed)) {
    void* h = nullptr;
    cudaError_t e = cudaHostAlloc(&h, sizeof(ErrFlag), cudaHostAllocMapped | cudaHostAllocPortable);
    if (e != cudaSuccess) return e;
    std::memset(h, 0, sizeof(ErrFlag));
    void* d = nullptr;
    e = cudaHostGetDevicePointer(&d, h, 0);
    if (e != cudaSuccess) {
      cudaFreeHost(h);
      return e;
    }
    g_flag_dev = static_cast<ErrFlag*>(d);
    g_flag_host.store(static_cast<ErrFlag*>(h), std::memory_order_release);
  }
  *dev = g_flag_dev;
  return cudaSuccess;
}

const char* op_name(int op) {
  switch (op) {
    case OP_CONV_CSR: return "conv2d_csr";
    case OP_CONV_BSR: return "conv2d_bsr4x1";
    case OP_DW_CSR: return "dwconv2d_csr";
    case OP_LINEAR: return "linear_csr";
    default: return "?";
  }
}

// Consumes a fault recorded by an earlier kernel (no synchronization): clears it and fails.
int take_pending(const char* what) {
  ErrFlag* h = g_flag_host.load(std::memory_order_acquire);
  if (!h) return ST_OK;
  volatile ErrFlag* v = h;
  const int code = v->code;
  if (code == ERR_NONE) return ST_OK;
  const int op = v->op, row = v->row, value = v->value;
  v->code = ERR_NONE;
  Fail f(ST_EINVAL);
  f << what << ": an earlier CUDA " << op_name(op)
    << " kernel met a malformed sparse pattern and skipped it, so its output is wrong: ";
  if (code == ERR_INDPTR)
    f << "indptr entry " << value << " at row " << row << " is outside [0, nnz] or decreases";
  else
    f << "index " << value << " in row " << row << " is out of range";
  f << " (validate layers with st_cuda_validate_sparse / cuda_validate_sparse when creating them)";
  return f;
}

constexpr int64_t kI32 = 2147483647;

// The CPU core's linear checks, plus the 32-bit limit of the CUDA kernels' indexing.
int check_linear(const char* what, int32_t n, int32_t in_f, int32_t out_f, const float* x,
                 int32_t act, const float* out) {
  if (int rc = from_cpu(st::check_linear(what, n, in_f, out_f, x, act, out))) return rc;
  if (static_cast<int64_t>(n) * in_f > kI32 || static_cast<int64_t>(n) * out_f > kI32)
    return Fail(ST_EUNSUPPORTED) << what << ": input or output has more than 2^31 - 1 elements";
  return ST_OK;
}

int check_sizes(const char* what, const st_conv2d_shape* s, int oh, int ow) {
  const int64_t in_plane = static_cast<int64_t>(s->cin) * s->h * s->w;
  const int64_t out_plane = static_cast<int64_t>(s->cout) * oh * ow;
  if (in_plane > kI32 || out_plane > kI32 || static_cast<int64_t>(s->cin) * s->kh * s->kw > kI32)
    return Fail(ST_EUNSUPPORTED) << what << ": one sample's input or output has more than 2^31 - 1 "
                                 << "elements";
  if (s->n > 65535 || s->cout > 65535)
    return Fail(ST_EUNSUPPORTED) << what << ": batch and channels must be <= 65535 (n=" << s->n
                                 << " cout=" << s->cout << ")";
  return ST_OK;
}

int check_pattern_sizes(const char* what, int64_t rows, int block_rows, const int32_t* indptr,
                        int64_t indptr_len, const int32_t* indices, int64_t nnz,
                        const float* values, int64_t values_len) {
  const int64_t brows = (rows + block_rows - 1) / block_rows;
  if (!indptr) return Fail(ST_EINVAL) << what << ": indptr is null";
  if (indptr_len != brows + 1)
    return Fail(ST_EINVAL) << what << ": indptr has " << indptr_len << " entries, expected "
                           << brows + 1 << " (" << brows << (block_rows > 1 ? " block" : "")
                           << " rows + 1)";
  if (nnz < 0 || nnz > kI32) return Fail(ST_EINVAL) << what << ": nnz " << nnz << " out of range";
  if (nnz > 0 && (!indices || !values))
    return Fail(ST_EINVAL) << what << ": indices/values are null with nnz = " << nnz;
  if (values_len != nnz * block_rows)
    return Fail(ST_EINVAL) << what << ": values has " << values_len << " entries, expected "
                           << nnz * block_rows;
  return ST_OK;
}

int conv_sparse(int R, const char* what, const st_conv2d_shape* s, const float* x,
                const int32_t* indptr, int64_t indptr_len, const int32_t* indices, int64_t nnz,
                const float* values, int64_t values_len, const float* bias, const float* residual,
                float* out, int32_t device, void* stream) {
  g_error.clear();
  if (int rc = take_pending(what)) return rc;
  int32_t oh = 0, ow = 0;
  if (int rc = from_cpu(st::check_conv_shape(what, s, x, out, &oh, &ow))) return rc;
  if (int rc = check_sizes(what, s, oh, ow)) return rc;
  if (int rc = check_pattern_sizes(what, s->cout, R, indptr, indptr_len, indices, nnz, values,
                                   values_len))
    return rc;
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return cuda_fail(what, guard.err);
  ErrFlag* flag = nullptr;
  if (cudaError_t e = ensure_flag(&flag)) return cuda_fail(what, e);
  const Geom g{s->n, s->cin, s->h, s->w, s->cout, s->kh, s->kw, s->stride, s->pad, s->act, oh, ow};
  cudaError_t e = launch_conv_sparse(R, g, x, indptr, indices, values, nnz, bias, residual, out,
                                     flag, static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? ST_OK : cuda_fail(what, e);
}

int dw(const char* what, const st_conv2d_shape* s, const float* x, const float* weight,
       const int32_t* indptr, int64_t indptr_len, const int32_t* indices, int64_t nnz,
       const float* values, int64_t values_len, const float* bias, const float* residual,
       float* out, int32_t device, void* stream) {
  g_error.clear();
  if (int rc = take_pending(what)) return rc;
  int32_t oh = 0, ow = 0;
  if (int rc = from_cpu(st::check_conv_shape(what, s, x, out, &oh, &ow))) return rc;
  if (s->cin != s->cout || s->kh != s->kw)
    return Fail(ST_EINVAL) << what << ": depthwise needs cin == cout and a square kernel (cin="
                           << s->cin << " cout=" << s->cout << " kernel " << s->kh << "x" << s->kw
                           << ")";
  if (int rc = check_sizes(what, s, oh, ow)) return rc;
  if (weight == nullptr) {
    if (int rc = check_pattern_sizes(what, s->cout, 1, indptr, indptr_len, indices, nnz, values,
                                     values_len))
      return rc;
  }
  DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return cuda_fail(what, guard.err);
  ErrFlag* flag = nullptr;
  if (cudaError_t e = ensure_flag(&flag)) return cuda_fail(what, e);
  const Geom g{s->n, s->cin, s->h, s->w, s->cout, s->kh, s->kw, s->stride, s->pad, s->act, oh, ow};
  cudaError_t e = launch_dw(g, x, weight, indptr, indices, values, nnz, bias, residual, out, flag,
                            static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? ST_OK : cuda_fail(what, e);
}
}  // namespace
}  // namespace stc

extern "C" {

const char* st_cuda_last_error(void) { return stc::g_error.c_str(); }

int st_cuda_conv2d_csr(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                       int64_t indptr_len, const int32_t* indices, int64_t nnz,
                       const float* values, int64_t values_len, const float* bias,
                       const float* residual, float* out, int32_t device, void* stream) {
  return stc::conv_sparse(1, "cuda conv2d_csr", s, x, indptr, indptr_len, indices, nnz, values,
                          values_len, bias, residual, out, device, stream);
}

int st_cuda_conv2d_bsr4x1(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                          int64_t indptr_len, const int32_t* indices, int64_t nnzb,
                          const float* values, int64_t values_len, const float* bias,
                          const float* residual, float* out, int32_t device, void* stream) {
  return stc::conv_sparse(4, "cuda conv2d_bsr4x1", s, x, indptr, indptr_len, indices, nnzb, values,
                          values_len, bias, residual, out, device, stream);
}

int st_cuda_dwconv2d_dense(const st_conv2d_shape* s, const float* x, const float* weight,
                           const float* bias, const float* residual, float* out, int32_t device,
                           void* stream) {
  if (!weight) {
    stc::g_error = "cuda dwconv2d: weight is null";
    return ST_EINVAL;
  }
  return stc::dw("cuda dwconv2d", s, x, weight, nullptr, 0, nullptr, 0, nullptr, 0, bias, residual,
                 out, device, stream);
}

int st_cuda_dwconv2d_csr(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                         int64_t indptr_len, const int32_t* indices, int64_t nnz,
                         const float* values, int64_t values_len, const float* bias,
                         const float* residual, float* out, int32_t device, void* stream) {
  return stc::dw("cuda dwconv2d_csr", s, x, nullptr, indptr, indptr_len, indices, nnz, values,
                 values_len, bias, residual, out, device, stream);
}

int st_cuda_linear_csr(int32_t n, int32_t in_features, int32_t out_features, const float* x,
                       const int32_t* indptr, int64_t indptr_len, const int32_t* indices,
                       int64_t nnz, const float* values, int64_t values_len, const float* bias,
                       int32_t act, float* out, int32_t device, void* stream) {
  const char* what = "cuda linear_csr";
  stc::g_error.clear();
  if (int rc = stc::take_pending(what)) return rc;
  if (int rc = stc::check_linear(what, n, in_features, out_features, x, act, out)) return rc;
  if (int rc = stc::check_pattern_sizes(what, out_features, 1, indptr, indptr_len, indices, nnz,
                                        values, values_len))
    return rc;
  stc::DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return stc::cuda_fail(what, guard.err);
  stc::ErrFlag* flag = nullptr;
  if (cudaError_t e = stc::ensure_flag(&flag)) return stc::cuda_fail(what, e);
  cudaError_t e = stc::launch_linear_csr(n, in_features, out_features, x, indptr, indices, values,
                                         nnz, bias, act, out, flag, static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? ST_OK : stc::cuda_fail(what, e);
}

int st_cuda_linear_dense(int32_t n, int32_t in_features, int32_t out_features, const float* x,
                         const float* weight, int64_t weight_len, const float* bias, int32_t act,
                         float* out, int32_t device, void* stream) {
  using stc::Fail;
  const char* what = "cuda linear_dense";
  stc::g_error.clear();
  if (int rc = stc::take_pending(what)) return rc;
  if (int rc = stc::check_linear(what, n, in_features, out_features, x, act, out)) return rc;
  if (!weight) return Fail(ST_EINVAL) << what << ": weight is null";
  if (weight_len != static_cast<int64_t>(out_features) * in_features)
    return Fail(ST_EINVAL) << what << ": weight has " << weight_len << " values, expected "
                           << out_features << " x " << in_features;
  stc::DeviceGuard guard(device);
  if (guard.err != cudaSuccess) return stc::cuda_fail(what, guard.err);
  cudaError_t e = stc::launch_linear_dense(n, in_features, out_features, x, weight, bias, act, out,
                                           static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? ST_OK : stc::cuda_fail(what, e);
}

int st_cuda_validate_sparse(int32_t rows, int32_t cols, int32_t block_rows, const int32_t* indptr,
                            int64_t indptr_len, const int32_t* indices, int64_t nnz,
                            int64_t values_len, int32_t device, void* stream) {
  using stc::Fail;
  const char* what = "cuda sparse weight";
  stc::g_error.clear();
  if (block_rows < 1) return Fail(ST_EINVAL) << what << ": block_rows must be >= 1";
  if (rows < 1 || cols < 1)
    return Fail(ST_EINVAL) << what << ": matrix must be at least 1x1, got " << rows << "x" << cols;
  const int64_t brows = (static_cast<int64_t>(rows) + block_rows - 1) / block_rows;
  if (!indptr) return Fail(ST_EINVAL) << what << ": indptr is null";
  if (indptr_len != brows + 1)
    return Fail(ST_EINVAL) << what << ": indptr has " << indptr_len << " entries, expected "
                           << brows + 1;
  if (nnz < 0 || nnz > stc::kI32) return Fail(ST_EINVAL) << what << ": nnz " << nnz << " out of range";
  if (nnz > 0 && !indices) return Fail(ST_EINVAL) << what << ": indices is null with nnz = " << nnz;
  std::vector<int32_t> h_ptr(static_cast<size_t>(indptr_len)), h_idx(static_cast<size_t>(nnz));
  {
    stc::DeviceGuard guard(device);
    if (guard.err != cudaSuccess) return stc::cuda_fail(what, guard.err);
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    cudaError_t e = cudaMemcpyAsync(h_ptr.data(), indptr, sizeof(int32_t) * h_ptr.size(),
                                    cudaMemcpyDeviceToHost, st);
    if (e == cudaSuccess && nnz > 0)
      e = cudaMemcpyAsync(h_idx.data(), indices, sizeof(int32_t) * h_idx.size(),
                          cudaMemcpyDeviceToHost, st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st);
    if (e != cudaSuccess) return stc::cuda_fail(what, e);
  }
  static const float dummy = 0.f;
  return stc::from_cpu(st::validate_sparse(what, rows, cols, block_rows, h_ptr.data(), indptr_len,
                                           h_idx.data(), nnz, &dummy, values_len));
}

int st_cuda_check(int32_t device, void* stream) {
  const char* what = "cuda check";
  stc::g_error.clear();
  {
    stc::DeviceGuard guard(device);
    if (guard.err != cudaSuccess) return stc::cuda_fail(what, guard.err);
    cudaError_t e = stream ? cudaStreamSynchronize(static_cast<cudaStream_t>(stream))
                           : cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) return stc::cuda_fail(what, e);
  }
  return stc::take_pending(what);
}

int st_cuda_error_pending(void) {
  stc::ErrFlag* h = stc::g_flag_host.load(std::memory_order_acquire);
  return h && static_cast<volatile stc::ErrFlag*>(h)->code != stc::ERR_NONE ? 1 : 0;
}
}  // extern "C"
