/*
 * st_kernels_cuda: the sparse kernels of st_kernels.h on NVIDIA GPUs (C ABI).
 *
 * Same semantics and formats as st_kernels.h (read it first): float32 NCHW, batch >= 1, CSR rows =
 * output channels with columns (ci, ky, kx), BSR4x1 block-major, depthwise CSR with tap ids
 * ky * k + kx, epilogue out = act(conv + bias) (+ residual, added after act), symmetric zero
 * padding, stride >= 1. Every pointer except the shape is DEVICE memory of `device`.
 *
 * Calls are asynchronous: they check the arguments on the host (sizes, null pointers, nnz against
 * indptr_len / values_len), enqueue the kernel on `stream` (a cudaStream_t; NULL = the legacy
 * default stream) with `device` current (device < 0: the current device), and return.
 *
 * Malformed sparse patterns: the host never reads the pattern in the launch path (it lives on the
 * device). The kernels bounds-guard every pattern read instead: indptr entries are clamped to
 * [0, nnz], a decreasing row is empty, a column/tap index out of range is skipped, so a bad layer
 * can never cause an out-of-bounds access; it records a sticky error (op, row, bad value) in a
 * small buffer of mapped pinned host memory. Every entry point looks at that buffer first (no
 * device synchronization) and, if a previous kernel set it, clears it and fails with ST_EINVAL and
 * a message naming the fault; st_cuda_check() synchronizes first and then does the same. Validate
 * each layer once with st_cuda_validate_sparse() (it copies the pattern to the host and runs the
 * checks of st_validate_sparse) so that this never happens in normal use.
 *
 * Return codes are st_status values; st_cuda_last_error() holds the message (thread-local).
 * CUDA runtime failures (launch errors, no device, ...) are ST_EINTERNAL.
 */
#ifndef ST_KERNELS_CUDA_H_
#define ST_KERNELS_CUDA_H_

#include <stdint.h>

#include "st_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Message of the last failed st_cuda_* call on this thread ("" if none). */
ST_API const char* st_cuda_last_error(void);

/* groups = 1; CSR (1x1 runs as an SpMM over pixels, kxk as a direct sparse conv). */
ST_API int st_cuda_conv2d_csr(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                              int64_t indptr_len, const int32_t* indices, int64_t nnz,
                              const float* values, int64_t values_len, const float* bias,
                              const float* residual, float* out, int32_t device, void* stream);
/* groups = 1; BSR 4x1 blocks (4 output channels share each input column). */
ST_API int st_cuda_conv2d_bsr4x1(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                                 int64_t indptr_len, const int32_t* indices, int64_t nnzb,
                                 const float* values, int64_t values_len, const float* bias,
                                 const float* residual, float* out, int32_t device, void* stream);
/* Depthwise (groups = cin = cout, kh = kw), dense weights [C, 1, k, k] ... */
ST_API int st_cuda_dwconv2d_dense(const st_conv2d_shape* s, const float* x, const float* weight,
                                  const float* bias, const float* residual, float* out,
                                  int32_t device, void* stream);
/* ... or the per-channel list of live taps. */
ST_API int st_cuda_dwconv2d_csr(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                                int64_t indptr_len, const int32_t* indices, int64_t nnz,
                                const float* values, int64_t values_len, const float* bias,
                                const float* residual, float* out, int32_t device, void* stream);
/* y[n, o] = act(sum_j W[o, j] x[n, j] + bias[o]); CSR rows = out_features. */
ST_API int st_cuda_linear_csr(int32_t n, int32_t in_features, int32_t out_features, const float* x,
                              const int32_t* indptr, int64_t indptr_len, const int32_t* indices,
                              int64_t nnz, const float* values, int64_t values_len,
                              const float* bias, int32_t act, float* out, int32_t device,
                              void* stream);

/* The same with W dense, row-major [out_features, in_features] (weight_len values). */
ST_API int st_cuda_linear_dense(int32_t n, int32_t in_features, int32_t out_features,
                                const float* x, const float* weight, int64_t weight_len,
                                const float* bias, int32_t act, float* out, int32_t device,
                                void* stream);

/* Copies a device CSR / BSR (block_rows = 4) pattern to the host (synchronizing `stream`) and runs
 * the checks of st_validate_sparse. Meant to run once per layer, when it is created. */
ST_API int st_cuda_validate_sparse(int32_t rows, int32_t cols, int32_t block_rows,
                                   const int32_t* indptr, int64_t indptr_len,
                                   const int32_t* indices, int64_t nnz, int64_t values_len,
                                   int32_t device, void* stream);

/* Synchronizes `stream` (NULL: the whole device) and fails if a kernel reported a malformed
 * pattern (the flag is then cleared) or the device reported an asynchronous error. */
ST_API int st_cuda_check(int32_t device, void* stream);

/* 1 if a kernel has reported a malformed pattern that no call has consumed yet (no sync). */
ST_API int st_cuda_error_pending(void);

#ifdef __cplusplus
}
#endif
#endif /* ST_KERNELS_CUDA_H_ */
