// Sparse conv (groups = 1) with CSR (R = 1) or BSR 4x1 (R = 4) weights, and sparse linear.
//
// Conv: a block is BX x BY threads (BX in {32, 64, 128}, BX * BY = 256). threadIdx.y picks the
// (block) row of the weight, i.e. R output channels; threadIdx.x walks the output pixels, PPT of
// them per thread at stride BX, so a warp reads 32 consecutive pixels (coalesced along W). Every
// warp belongs to one weight row, stages 32 of its nonzeros at a time in its own slice of shared
// memory (column decoded once, bounds-checked), then every lane accumulates them for its pixels.
// K1 = 1x1 without padding: an SpMM over pixels (no bounds checks in the inner loop); otherwise a
// direct sparse conv whose input offsets are bounds-checked per tap.
#include "common.cuh"

namespace stc {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <int R, bool K1, int PPT>
__global__ void __launch_bounds__(kThreads)
conv_sparse_kernel(const float* __restrict__ x, const int32_t* __restrict__ indptr,
                   const int32_t* __restrict__ indices, const float* __restrict__ values,
                   int64_t nnz, const float* __restrict__ bias, const float* __restrict__ res,
                   float* __restrict__ out, Geom g, ErrFlag* flag) {
  __shared__ int s_off[kWarps][32];   // ci * H * W
  __shared__ int s_k[kWarps][32];     // (ky << 16) | kx   (kxk only)
  __shared__ float s_v[kWarps][32][R];

  const int bx = blockDim.x;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int warp = (ty * bx + tx) >> 5, lane = tx & 31;
  const int row = blockIdx.y * blockDim.y + ty;  // weight (block) row, uniform over the warp
  const int rows = (g.cout + R - 1) / R;
  if (row >= rows) return;  // whole warps only: BX is a multiple of 32
  const int n = blockIdx.z;
  const int P = g.oh * g.ow;
  const int HW = g.h * g.w;
  const int khw = g.kh * g.kw;
  const int cols = g.cin * khw;
  const int op = R == 1 ? OP_CONV_CSR : OP_CONV_BSR;

  int pix[PPT];   // output pixel, or -1
  int ipos[PPT];  // K1: input pixel offset; kxk: unused
  int iy0[PPT], ix0[PPT];
#pragma unroll
  for (int i = 0; i < PPT; ++i) {
    const int p = blockIdx.x * bx * PPT + tx + i * bx;
    pix[i] = p < P ? p : -1;
    const int pp = p < P ? p : 0;
    const int oy = pp / g.ow, ox = pp - oy * g.ow;
    iy0[i] = oy * g.stride - g.pad;
    ix0[i] = ox * g.stride - g.pad;
    ipos[i] = iy0[i] * g.w + ix0[i];
  }

  float acc[R][PPT];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < PPT; ++i) acc[r][i] = 0.f;

  const float* xn = x + static_cast<size_t>(n) * g.cin * HW;
  int s, e;
  row_range(indptr, row, nnz, flag, op, s, e);
  for (int j0 = s; j0 < e; j0 += 32) {
    const int cnt = min(32, e - j0);
    if (lane < cnt) {
      const int j = j0 + lane;
      int c = __ldg(indices + j);
      float v[R];
#pragma unroll
      for (int r = 0; r < R; ++r) v[r] = __ldg(values + static_cast<size_t>(j) * R + r);
      if (static_cast<unsigned>(c) >= static_cast<unsigned>(cols)) {
        report(flag, ERR_INDEX, op, row, c);
        c = 0;
#pragma unroll
        for (int r = 0; r < R; ++r) v[r] = 0.f;
      }
      if (K1) {
        s_off[warp][lane] = c * HW;
      } else {
        const int ci = c / khw, t = c - ci * khw;
        const int ky = t / g.kw, kx = t - ky * g.kw;
        s_off[warp][lane] = ci * HW;
        s_k[warp][lane] = (ky << 16) | kx;
      }
#pragma unroll
      for (int r = 0; r < R; ++r) s_v[warp][lane][r] = v[r];
    }
    __syncwarp();
    for (int t = 0; t < cnt; ++t) {
      const float* xc = xn + s_off[warp][t];
      float v[R];
#pragma unroll
      for (int r = 0; r < R; ++r) v[r] = s_v[warp][t][r];
      if (K1) {
#pragma unroll
        for (int i = 0; i < PPT; ++i) {
          if (pix[i] >= 0) {
            const float xv = __ldg(xc + ipos[i]);
#pragma unroll
            for (int r = 0; r < R; ++r) acc[r][i] = fmaf(v[r], xv, acc[r][i]);
          }
        }
      } else {
        const int kk = s_k[warp][t];
        const int ky = kk >> 16, kx = kk & 0xffff;
#pragma unroll
        for (int i = 0; i < PPT; ++i) {
          const int iy = iy0[i] + ky, ix = ix0[i] + kx;
          if (pix[i] >= 0 && static_cast<unsigned>(iy) < static_cast<unsigned>(g.h) &&
              static_cast<unsigned>(ix) < static_cast<unsigned>(g.w)) {
            const float xv = __ldg(xc + iy * g.w + ix);
#pragma unroll
            for (int r = 0; r < R; ++r) acc[r][i] = fmaf(v[r], xv, acc[r][i]);
          }
        }
      }
    }
    __syncwarp();
  }

#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int co = row * R + r;
    if (co >= g.cout) break;
    const float b = bias ? __ldg(bias + co) : 0.f;
    const size_t base = (static_cast<size_t>(n) * g.cout + co) * P;
#pragma unroll
    for (int i = 0; i < PPT; ++i) {
      if (pix[i] < 0) continue;
      float v = apply_act(acc[r][i] + b, g.act);
      if (res) v += __ldg(res + base + pix[i]);
      out[base + pix[i]] = v;
    }
  }
}

template <int R, bool K1, int PPT>
cudaError_t launch_t(int bx, const Geom& g, const float* x, const int32_t* indptr,
                     const int32_t* indices, const float* values, int64_t nnz, const float* bias,
                     const float* res, float* out, ErrFlag* flag, cudaStream_t st) {
  const int by = kThreads / bx;
  const int P = g.oh * g.ow;
  const int rows = (g.cout + R - 1) / R;
  dim3 block(bx, by, 1);
  dim3 grid((P + bx * PPT - 1) / (bx * PPT), (rows + by - 1) / by, g.n);
  conv_sparse_kernel<R, K1, PPT><<<grid, block, 0, st>>>(x, indptr, indices, values, nnz, bias,
                                                          res, out, g, flag);
  return cudaGetLastError();
}

template <int R, bool K1>
cudaError_t launch_k(const Geom& g, const float* x, const int32_t* indptr, const int32_t* indices,
                     const float* values, int64_t nnz, const float* bias, const float* res,
                     float* out, ErrFlag* flag, cudaStream_t st) {
  // Pick (BX, PPT): the first in order of preference that keeps >= 75 % of the threads busy, else
  // the busiest.
  static const int kCfg[][2] = {{128, 4}, {64, 4}, {32, 4}, {128, 2}, {64, 2}, {32, 2}, {32, 1}};
  const int64_t P = static_cast<int64_t>(g.oh) * g.ow;
  int best = 0;
  double best_u = -1;
  for (int i = 0; i < 7; ++i) {
    const int64_t per = kCfg[i][0] * kCfg[i][1];
    const double u = static_cast<double>(P) / (((P + per - 1) / per) * per);
    if (u >= 0.75) {
      best = i;
      break;
    }
    if (u > best_u) {
      best_u = u;
      best = i;
    }
  }
  const int bx = kCfg[best][0], ppt = kCfg[best][1];
  if (ppt == 4) return launch_t<R, K1, 4>(bx, g, x, indptr, indices, values, nnz, bias, res, out, flag, st);
  if (ppt == 2) return launch_t<R, K1, 2>(bx, g, x, indptr, indices, values, nnz, bias, res, out, flag, st);
  return launch_t<R, K1, 1>(bx, g, x, indptr, indices, values, nnz, bias, res, out, flag, st);
}

// Linear: one warp per (out feature o, sample n), o-major so the warps of one row share its
// nonzeros in L1; lanes split the row and reduce with shuffles.
__global__ void __launch_bounds__(kThreads)
linear_csr_kernel(const float* __restrict__ x, const int32_t* __restrict__ indptr,
                  const int32_t* __restrict__ indices, const float* __restrict__ values, int64_t nnz,
                  const float* __restrict__ bias, int act, float* __restrict__ out, int n_,
                  int in_f, int out_f, ErrFlag* flag) {
  const int64_t gw = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (gw >= static_cast<int64_t>(out_f) * n_) return;  // warp-uniform
  const int o = static_cast<int>(gw / n_), n = static_cast<int>(gw - static_cast<int64_t>(o) * n_);
  int s, e;
  row_range(indptr, o, nnz, flag, OP_LINEAR, s, e);
  const float* xn = x + static_cast<size_t>(n) * in_f;
  float acc = 0.f;
  for (int j = s + lane; j < e; j += 32) {
    const int c = __ldg(indices + j);
    if (static_cast<unsigned>(c) >= static_cast<unsigned>(in_f)) {
      report(flag, ERR_INDEX, OP_LINEAR, o, c);
      continue;
    }
    acc = fmaf(__ldg(values + j), __ldg(xn + c), acc);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (lane == 0) {
    const float b = bias ? __ldg(bias + o) : 0.f;
    out[static_cast<size_t>(n) * out_f + o] = apply_act(acc + b, act);
  }
}
}  // namespace

cudaError_t launch_conv_sparse(int block_rows, const Geom& g, const float* x, const int32_t* indptr,
                               const int32_t* indices, const float* values, int64_t nnz,
                               const float* bias, const float* res, float* out, ErrFlag* flag,
                               cudaStream_t st) {
  const bool k1 = g.kh == 1 && g.kw == 1 && g.pad == 0;
  if (block_rows == 4) {
    if (k1) return launch_k<4, true>(g, x, indptr, indices, values, nnz, bias, res, out, flag, st);
    return launch_k<4, false>(g, x, indptr, indices, values, nnz, bias, res, out, flag, st);
  }
  if (k1) return launch_k<1, true>(g, x, indptr, indices, values, nnz, bias, res, out, flag, st);
  return launch_k<1, false>(g, x, indptr, indices, values, nnz, bias, res, out, flag, st);
}

cudaError_t launch_linear_csr(int n, int in_f, int out_f, const float* x, const int32_t* indptr,
                              const int32_t* indices, const float* values, int64_t nnz,
                              const float* bias, int act, float* out, ErrFlag* flag,
                              cudaStream_t st) {
  const int64_t warps = static_cast<int64_t>(n) * out_f;
  const int64_t blocks = (warps + kWarps - 1) / kWarps;
  linear_csr_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, st>>>(
      x, indptr, indices, values, nnz, bias, act, out, n, in_f, out_f, flag);
  return cudaGetLastError();
}
}  // namespace stc
