// Dense linear, y[n, o] = act(sum_j W[o, j] x[n, j] + b[o]): the fully connected layers a plan
// keeps dense. At batch 1 this is a matrix-vector product bound by reading W once, so one warp
// streams one row of W with 16-byte loads and keeps a few samples' sums in registers; rows of W
// are read once per group of kSamples samples.
#include "common.cuh"

namespace stc {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kSamples = 4;

template <bool Vec4>
__global__ void __launch_bounds__(kThreads)
linear_dense_kernel(const float* __restrict__ x, const float* __restrict__ w,
                    const float* __restrict__ bias, int act, float* __restrict__ out, int n_,
                    int in_f, int out_f) {
  const int64_t gw = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  const int groups = (n_ + kSamples - 1) / kSamples;
  if (gw >= static_cast<int64_t>(out_f) * groups) return;  // warp-uniform
  // o-major: the warps of one group of samples walk W's rows in order.
  const int o = static_cast<int>(gw / groups);
  const int n0 = static_cast<int>(gw - static_cast<int64_t>(o) * groups) * kSamples;
  const int ns = n_ - n0 < kSamples ? n_ - n0 : kSamples;
  const float* wo = w + static_cast<size_t>(o) * in_f;
  const float* xn = x + static_cast<size_t>(n0) * in_f;
  float acc[kSamples] = {0.f, 0.f, 0.f, 0.f};
  if (Vec4) {
    const int q = in_f / 4;
    const float4* w4 = reinterpret_cast<const float4*>(wo);
    for (int j = lane; j < q; j += 32) {
      const float4 a = __ldg(w4 + j);
#pragma unroll
      for (int s = 0; s < kSamples; ++s) {
        if (s < ns) {
          const float4 b = __ldg(reinterpret_cast<const float4*>(xn + static_cast<size_t>(s) * in_f) + j);
          acc[s] = fmaf(a.x, b.x, fmaf(a.y, b.y, fmaf(a.z, b.z, fmaf(a.w, b.w, acc[s]))));
        }
      }
    }
  } else {
    for (int j = lane; j < in_f; j += 32) {
      const float a = __ldg(wo + j);
#pragma unroll
      for (int s = 0; s < kSamples; ++s)
        if (s < ns) acc[s] = fmaf(a, __ldg(xn + static_cast<size_t>(s) * in_f + j), acc[s]);
    }
  }
  const float b = bias ? __ldg(bias + o) : 0.f;
#pragma unroll
  for (int s = 0; s < kSamples; ++s) {
    float v = acc[s];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0 && s < ns) out[static_cast<size_t>(n0 + s) * out_f + o] = apply_act(v + b, act);
  }
}
}  // namespace

cudaError_t launch_linear_dense(int n, int in_f, int out_f, const float* x, const float* w,
                                const float* bias, int act, float* out, cudaStream_t st) {
  const int64_t warps = static_cast<int64_t>(out_f) * ((n + kSamples - 1) / kSamples);
  const unsigned blocks = static_cast<unsigned>((warps + kWarps - 1) / kWarps);
  // 16-byte loads need every row of x and W to start on 16 bytes.
  const bool vec4 = in_f % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(w) % 16 == 0;
  if (vec4)
    linear_dense_kernel<true><<<blocks, kThreads, 0, st>>>(x, w, bias, act, out, n, in_f, out_f);
  else
    linear_dense_kernel<false><<<blocks, kThreads, 0, st>>>(x, w, bias, act, out, n, in_f, out_f);
  return cudaGetLastError();
}
}  // namespace stc
