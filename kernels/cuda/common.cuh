// Shared pieces of the CUDA kernels: the sticky error flag, guarded CSR row ranges, the epilogue,
// and the launch functions each kernel file provides to api.cu.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace stc {

// Sticky error record in mapped pinned host memory (written by kernels, read by the host).
struct ErrFlag {
  int code;   // ERR_* (0 = none); written last
  int op;     // OP_*
  int row;    // row (output channel / block row / out feature) of the fault
  int value;  // the offending indptr entry or index
};
enum { ERR_NONE = 0, ERR_INDPTR = 1, ERR_INDEX = 2 };
enum { OP_CONV_CSR = 1, OP_CONV_BSR = 2, OP_DW_CSR = 3, OP_LINEAR = 4 };

// Geometry of one launch (output size already computed and checked on the host).
struct Geom {
  int n, cin, h, w, cout, kh, kw, stride, pad, act, oh, ow;
};

#ifdef __CUDACC__
// Only ever runs on the error path (no atomics: concurrent reporters race, one of them wins).
__device__ __forceinline__ void report(ErrFlag* f, int code, int op, int row, int value) {
  volatile ErrFlag* v = f;
  if (v->code == 0) {
    v->op = op;
    v->row = row;
    v->value = value;
    __threadfence_system();
    v->code = code;
    __threadfence_system();
  }
}

// [s, e) of row r: indptr entries clamped to [0, nnz], a decreasing row is empty; any of these
// faults is reported.
__device__ __forceinline__ void row_range(const int32_t* __restrict__ indptr, int r, int64_t nnz,
                                          ErrFlag* flag, int op, int& s, int& e) {
  const int a = __ldg(indptr + r), b = __ldg(indptr + r + 1);
  const int64_t sa = a < 0 ? 0 : (a > nnz ? nnz : a);
  const int64_t sb = b < 0 ? 0 : (b > nnz ? nnz : b);
  if (sa != a || sb != b || b < a) report(flag, ERR_INDPTR, op, r, sa != a ? a : b);
  s = static_cast<int>(sa);
  e = static_cast<int>(sb < sa ? sa : sb);
}

__device__ __forceinline__ float apply_act(float v, int act) {
  if (act == 1) return fmaxf(v, 0.f);
  if (act == 2) return fminf(fmaxf(v, 0.f), 6.f);
  return v;
}
#endif

// Launchers (host). x/out etc. are device pointers; return the launch's cudaError_t.
cudaError_t launch_conv_sparse(int block_rows, const Geom& g, const float* x, const int32_t* indptr,
                               const int32_t* indices, const float* values, int64_t nnz,
                               const float* bias, const float* res, float* out, ErrFlag* flag,
                               cudaStream_t st);
cudaError_t launch_dw(const Geom& g, const float* x, const float* weight, const int32_t* indptr,
                      const int32_t* indices, const float* values, int64_t nnz, const float* bias,
                      const float* res, float* out, ErrFlag* flag, cudaStream_t st);
cudaError_t launch_linear_csr(int n, int in_f, int out_f, const float* x, const int32_t* indptr,
                              const int32_t* indices, const float* values, int64_t nnz,
                              const float* bias, int act, float* out, ErrFlag* flag,
                              cudaStream_t st);
cudaError_t launch_linear_dense(int n, int in_f, int out_f, const float* x, const float* w,
                                const float* bias, int act, float* out, cudaStream_t st);
}  // namespace stc
