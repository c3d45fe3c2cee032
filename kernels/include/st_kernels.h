/*
 * st_kernels: sparse CPU kernels for pruned CNNs (C ABI).
 *
 * Layout: float32, NCHW activations, contiguous, batch >= 1.
 *
 * Epilogue (every conv op):
 *     out = act(conv(x, W) + bias)              when residual == NULL
 *     out = act(conv(x, W) + bias) + residual   otherwise
 * i.e. the residual is added AFTER the activation (the usual "project conv, then skip add" of
 * inverted residual blocks, where the project conv has no activation). bias may be NULL (= 0).
 * act: ST_ACT_NONE, ST_ACT_RELU (max(v, 0)), ST_ACT_RELU6 (min(max(v, 0), 6)).
 *
 * Output size: OH = (H + 2*pad - kh) / stride + 1, OW = (W + 2*pad - kw) / stride + 1 (floor),
 * zero padding, groups = 1 (conv2d_*) or groups = C (dwconv2d_*).
 *
 * Sparse formats (all int32 indices):
 *   CSR    rows = output channels, columns = flattened (ci, ky, kx), exactly torch's
 *          weight.reshape(cout, -1); indptr[cout + 1], indices[nnz], values[nnz].
 *   BSR4x1 blocks of 4 output channels x 1 column; block row b covers channels 4b..4b+3, the last
 *          block row may stick out past cout (its extra rows are ignored, keep them 0).
 *          indptr[ceil(cout / 4) + 1], indices[nnzb], values[nnzb * 4] (block-major: the 4 values
 *          of block j are values[4j .. 4j+3], channel 4b+i first for i = 0..3).
 *   dw CSR per channel: the live taps of channel c are indices[indptr[c] .. indptr[c+1]) with tap
 *          id ky * k + kx, values alongside.
 *
 * Every entry point validates its arguments (sizes, indptr monotone from 0 to nnz, indices in range)
 * before touching data and returns ST_OK or an error code; st_last_error() then holds a message
 * (thread-local). A malformed layer is an error, never an out-of-bounds read.
 */
#ifndef ST_KERNELS_H_
#define ST_KERNELS_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define ST_API __declspec(dllexport)
#else
#define ST_API __attribute__((visibility("default")))
#endif

enum st_status { ST_OK = 0, ST_EINVAL = 1, ST_EUNSUPPORTED = 2, ST_ENOMEM = 3, ST_EINTERNAL = 4 };
/* Kernel epilogues apply NONE, RELU and RELU6; st_activate applies every code. */
enum st_act {
  ST_ACT_NONE = 0, ST_ACT_RELU = 1, ST_ACT_RELU6 = 2,
  ST_ACT_SWISH = 3,     /* x * sigmoid(x) */
  ST_ACT_HSWISH = 4,    /* x * relu6(x + 3) / 6 */
  ST_ACT_SIGMOID = 5,
  ST_ACT_HSIGMOID = 6,  /* relu6(x + 3) / 6 */
  ST_ACT_GELU = 7,      /* x * (1 + erf(x / sqrt 2)) / 2 */
  ST_ACT_TANH = 8
};

/* Shape of one convolution. pad is symmetric and applies to both spatial dims. */
typedef struct st_conv2d_shape {
  int32_t n, cin, h, w;
  int32_t cout, kh, kw;
  int32_t stride, pad;
  int32_t act;
} st_conv2d_shape;

/* Message of the last failed call on this thread ("" if none). */
ST_API const char* st_last_error(void);

/* Variant selection. isa names: "avx512", "avx2", "scalar", "neon". */
ST_API const char* st_isa(void);                 /* the variant that runs now */
ST_API int st_isa_available(const char* isa);    /* 1 if this CPU and build can run it */
ST_API int st_set_isa(const char* isa);          /* force a variant; "auto" = best available */
ST_API int st_set_num_threads(int32_t n);        /* n >= 1; default: CPUs in this process's affinity mask */
ST_API int32_t st_get_num_threads(void);
/* Microseconds an idle worker polls for the next job before it sleeps (default 200, or
 * $ST_KERNELS_SPIN_US). 0: workers sleep at once (for machines with more threads than cores). */
ST_API int st_set_spin_us(int32_t us);
ST_API int32_t st_get_spin_us(void);
/* Route the kernels' parallel loops through a host runtime's thread pool (TVM's, inside a TVM
 * artifact) instead of st_kernels' own, so the two never compete for the cores. `launch` must run
 * fn(task, arg) for every task in [0, ntasks) (on any of its threads) and return >= 0 when all are
 * done (tasks it leaves unclaimed run on the caller), or return < 0 having run nothing to decline
 * (st_kernels' pool then runs the job). NULL restores st_kernels' pool. Work is still split
 * for st_get_num_threads() threads: set both to the host pool's size. */
typedef void (*st_task_fn)(int32_t task, void* arg);
typedef int (*st_parallel_launcher)(int32_t ntasks, st_task_fn fn, void* arg);
ST_API int st_set_parallel_launcher(st_parallel_launcher launch);
/* Path of sparse 1x1/stride-1 convs: "gather" (tiles of all channels copied to a per-thread
 * buffer), "direct" (x read in place, packed first if unaligned) or "auto" (by shape, the
 * default; $ST_KERNELS_CONV1X1 sets the initial value). For benchmarks and tests. */
ST_API int st_set_conv1x1_path(const char* path);
ST_API const char* st_conv1x1_path(void);
/* The variants of kernels.inc: name "op-format-isa"; *built = 1 if compiled for this arch. */
ST_API int32_t st_variant_count(void);
ST_API const char* st_variant_name(int32_t i, int32_t* built);

/* groups = 1; CSR or BSR4x1 weights as described above. */
ST_API int st_conv2d_csr(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                         int64_t indptr_len, const int32_t* indices, int64_t nnz,
                         const float* values, int64_t values_len, const float* bias,
                         const float* residual, float* out);
ST_API int st_conv2d_bsr4x1(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                            int64_t indptr_len, const int32_t* indices, int64_t nnzb,
                            const float* values, int64_t values_len, const float* bias,
                            const float* residual, float* out);
/* A layer checked once and arranged for one input size, then run many times (what ONNX Runtime
 * and the Python layers do): the checks of the calls above, the input offsets of every nonzero
 * and the kernel's order of the weights are done by create, not per call.
 * create: block_rows 1 = CSR, 4 = BSR4x1 (formats above); s->n is ignored (run takes the batch);
 *   the plan keeps its own copy of the arrays and the ISA and 1x1 path chosen now (after
 *   st_set_isa / st_set_conv1x1_path an older plan still gives right results, re-planning per call).
 * run: x [n, cin, h, w] of the plan's size; bias, residual, act as in st_conv2d_csr. A plan may
 *   run from several threads at once. */
typedef struct st_conv2d_plan st_conv2d_plan;
ST_API int st_conv2d_plan_create(int32_t block_rows, const st_conv2d_shape* s, const int32_t* indptr,
                                 int64_t indptr_len, const int32_t* indices, int64_t nnz,
                                 const float* values, int64_t values_len, st_conv2d_plan** plan);
ST_API int st_conv2d_plan_run(const st_conv2d_plan* plan, int32_t n, const float* x,
                              const float* bias, const float* residual, float* out);
ST_API int st_conv2d_plan_output(const st_conv2d_plan* plan, int32_t* oh, int32_t* ow);
ST_API void st_conv2d_plan_free(st_conv2d_plan* plan);
/* 1 if the plan was made from exactly this layer (same shape, block_rows, act and array contents,
 * compared byte for byte; s->n is ignored) under the current ISA and 1x1-path settings, else 0:
 * lets a caller that is handed the same weights on every call keep a plan without trusting
 * pointers alone. */
ST_API int st_conv2d_plan_matches(const st_conv2d_plan* plan, int32_t block_rows, const st_conv2d_shape* s,
                                  const int32_t* indptr, int64_t indptr_len, const int32_t* indices,
                                  int64_t nnz, const float* values, int64_t values_len);

/* Depthwise (groups = cin = cout, kh = kw): dense weights [C, 1, k, k] ... */
ST_API int st_dwconv2d_dense(const st_conv2d_shape* s, const float* x, const float* weight,
                             const float* bias, const float* residual, float* out);
/* ... or the per-channel list of live taps. */
ST_API int st_dwconv2d_csr(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                           int64_t indptr_len, const int32_t* indices, int64_t nnz,
                           const float* values, int64_t values_len, const float* bias,
                           const float* residual, float* out);
/* y[n, o] = act(sum_j W[o, j] x[n, j] + bias[o]); CSR rows = out_features. */
ST_API int st_linear_csr(int32_t n, int32_t in_features, int32_t out_features, const float* x,
                         const int32_t* indptr, int64_t indptr_len, const int32_t* indices,
                         int64_t nnz, const float* values, int64_t values_len, const float* bias,
                         int32_t act, float* out);

/* The same with a dense W [out_features, in_features] (row-major, weight_len floats). */
ST_API int st_linear_dense(int32_t n, int32_t in_features, int32_t out_features, const float* x,
                           const float* weight, int64_t weight_len, const float* bias, int32_t act,
                           float* out);

/* Checks a CSR (block_rows = 1) or BSR (block_rows = 4) pattern without running anything. */
/* out[i] = act(x[i]) (+ residual[i] when residual != NULL), n elements; out may be x. Vectorised
 * (AVX-512 / AVX2 chosen at run time on x86); exp and erf are polynomials with relative error
 * below 2e-7 (exp) and absolute error below 2e-7 (erf). Any st_act code. */
ST_API int st_activate(const float* x, const float* residual, float* out, int64_t n, int32_t act);

ST_API int st_validate_sparse(int32_t rows, int32_t cols, int32_t block_rows, const int32_t* indptr,
                              int64_t indptr_len, const int32_t* indices, int64_t nnz,
                              int64_t values_len);

#ifdef __cplusplus
}
#endif
#endif /* ST_KERNELS_H_ */
