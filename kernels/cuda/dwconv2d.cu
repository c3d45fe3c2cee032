// Depthwise conv, dense weights [C, 1, k, k] (weight != nullptr) or per-channel CSR of live taps.
//
// Planes of >= kTileMin outputs: a block computes a 32 x 32 output tile of one (n, c) plane with
// 32 x 8 threads (4 rows each): it copies the zero-padded input window into shared memory (rows
// coalesced along W), then every thread reads only shared memory. k = 3/5/7 are compiled with the
// tap loops unrolled; other k take the runtime-k instance. Small planes (7x7, 14x14) would leave
// most of a tile idle, so they (and windows too big for shared memory) use a direct kernel with one
// thread per output element over all (n, c, y, x).
#include <algorithm>

#include "common.cuh"

namespace stc {
namespace {

constexpr int kTW = 32, kTH = 32, kBY = 8, kRPT = kTH / kBY;
constexpr int kChunk = 64;        // CSR taps staged per round
constexpr int kTileMin = 256;     // smallest plane (outputs) that uses the tiled kernel
constexpr size_t kMaxSmem = 48 * 1024;

template <int KT, bool CSR>
__global__ void __launch_bounds__(kTW * kBY)
dw_tile_kernel(const float* __restrict__ x, const float* __restrict__ weight,
               const int32_t* __restrict__ indptr, const int32_t* __restrict__ indices,
               const float* __restrict__ values, int64_t nnz, const float* __restrict__ bias,
               const float* __restrict__ res, float* __restrict__ out, Geom g, ErrFlag* flag) {
  extern __shared__ float smem[];
  const int k = KT ? KT : g.kh;
  const int S = g.stride;
  const int tiw = (kTW - 1) * S + k, tih = (kTH - 1) * S + k;
  float* tile = smem;                    // tih * tiw
  float* s_w = smem + tih * tiw;         // dense: k * k weights; CSR: kChunk values
  int* s_t = reinterpret_cast<int*>(s_w + (CSR ? kChunk : k * k));  // CSR: ky * tiw + kx

  const int C = g.cout;
  const int c = blockIdx.z % C, n = blockIdx.z / C;
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kTW + tx;
  const int oy0 = blockIdx.y * kTH, ox0 = blockIdx.x * kTW;
  const int iyb = oy0 * S - g.pad, ixb = ox0 * S - g.pad;
  const size_t plane = static_cast<size_t>(n) * C + c;
  const float* xp = x + plane * g.h * g.w;

  for (int i = tid; i < tih * tiw; i += kTW * kBY) {
    const int r = i / tiw, q = i - r * tiw;
    const int iy = iyb + r, ix = ixb + q;
    float v = 0.f;
    if (static_cast<unsigned>(iy) < static_cast<unsigned>(g.h) &&
        static_cast<unsigned>(ix) < static_cast<unsigned>(g.w))
      v = __ldg(xp + iy * g.w + ix);
    tile[i] = v;
  }
  if (!CSR) {
    for (int i = tid; i < k * k; i += kTW * kBY) s_w[i] = __ldg(weight + static_cast<size_t>(c) * k * k + i);
  }

  float acc[kRPT];
#pragma unroll
  for (int r = 0; r < kRPT; ++r) acc[r] = 0.f;
  const float* tbase = tile + (ty * S) * tiw + tx * S;

  if (!CSR) {
    __syncthreads();
    if (KT) {
#pragma unroll
      for (int ky = 0; ky < KT; ++ky) {
#pragma unroll
        for (int kx = 0; kx < KT; ++kx) {
          const float wv = s_w[ky * KT + kx];
#pragma unroll
          for (int r = 0; r < kRPT; ++r)
            acc[r] = fmaf(wv, tbase[(r * kBY * S + ky) * tiw + kx], acc[r]);
        }
      }
    } else {
#pragma unroll 1
      for (int ky = 0; ky < k; ++ky) {
#pragma unroll 1
        for (int kx = 0; kx < k; ++kx) {
          const float wv = s_w[ky * k + kx];
#pragma unroll
          for (int r = 0; r < kRPT; ++r)
            acc[r] = fmaf(wv, tbase[(r * kBY * S + ky) * tiw + kx], acc[r]);
        }
      }
    }
  } else {
    int s, e;
    row_range(indptr, c, nnz, flag, OP_DW_CSR, s, e);
    for (int j0 = s; j0 < e; j0 += kChunk) {
      const int cnt = min(kChunk, e - j0);
      __syncthreads();  // the tile is complete / the previous chunk is consumed
      if (tid < cnt) {
        int t = __ldg(indices + j0 + tid);
        float v = __ldg(values + j0 + tid);
        if (static_cast<unsigned>(t) >= static_cast<unsigned>(k * k)) {
          report(flag, ERR_INDEX, OP_DW_CSR, c, t);
          t = 0;
          v = 0.f;
        }
        const int ky = t / k, kx = t - ky * k;
        s_w[tid] = v;
        s_t[tid] = ky * tiw + kx;
      }
      __syncthreads();
      for (int t = 0; t < cnt; ++t) {
        const float wv = s_w[t];
        const float* tp = tbase + s_t[t];
#pragma unroll
        for (int r = 0; r < kRPT; ++r) acc[r] = fmaf(wv, tp[r * kBY * S * tiw], acc[r]);
      }
    }
  }

  const int ox = ox0 + tx;
  if (ox >= g.ow) return;
  const float b = bias ? __ldg(bias + c) : 0.f;
  const size_t obase = plane * g.oh * g.ow;
#pragma unroll
  for (int r = 0; r < kRPT; ++r) {
    const int oy = oy0 + ty + r * kBY;
    if (oy >= g.oh) break;
    const size_t o = obase + static_cast<size_t>(oy) * g.ow + ox;
    float v = apply_act(acc[r] + b, g.act);
    if (res) v += __ldg(res + o);
    out[o] = v;
  }
}

// One thread per output element (grid-stride over n * C * OH * OW).
template <bool CSR>
__global__ void __launch_bounds__(256)
dw_direct_kernel(const float* __restrict__ x, const float* __restrict__ weight,
                 const int32_t* __restrict__ indptr, const int32_t* __restrict__ indices,
                 const float* __restrict__ values, int64_t nnz, const float* __restrict__ bias,
                 const float* __restrict__ res, float* __restrict__ out, Geom g, ErrFlag* flag) {
  const int64_t total = static_cast<int64_t>(g.n) * g.cout * g.oh * g.ow;
  const int k = g.kh;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int ox = static_cast<int>(idx % g.ow);
    int64_t t = idx / g.ow;
    const int oy = static_cast<int>(t % g.oh);
    t /= g.oh;
    const int c = static_cast<int>(t % g.cout);
    const float* xp = x + static_cast<size_t>(t) * g.h * g.w;  // t = n * C + c
    const int iy0 = oy * g.stride - g.pad, ix0 = ox * g.stride - g.pad;
    float acc = 0.f;
    if (!CSR) {
      const float* wc = weight + static_cast<size_t>(c) * k * k;
      for (int ky = 0; ky < k; ++ky) {
        const int iy = iy0 + ky;
        if (static_cast<unsigned>(iy) >= static_cast<unsigned>(g.h)) continue;
        for (int kx = 0; kx < k; ++kx) {
          const int ix = ix0 + kx;
          if (static_cast<unsigned>(ix) >= static_cast<unsigned>(g.w)) continue;
          acc = fmaf(__ldg(wc + ky * k + kx), __ldg(xp + iy * g.w + ix), acc);
        }
      }
    } else {
      int s, e;
      row_range(indptr, c, nnz, flag, OP_DW_CSR, s, e);
      for (int j = s; j < e; ++j) {
        const int tap = __ldg(indices + j);
        if (static_cast<unsigned>(tap) >= static_cast<unsigned>(k * k)) {
          report(flag, ERR_INDEX, OP_DW_CSR, c, tap);
          continue;
        }
        const int ky = tap / k, kx = tap - ky * k;
        const int iy = iy0 + ky, ix = ix0 + kx;
        if (static_cast<unsigned>(iy) < static_cast<unsigned>(g.h) &&
            static_cast<unsigned>(ix) < static_cast<unsigned>(g.w))
          acc = fmaf(__ldg(values + j), __ldg(xp + iy * g.w + ix), acc);
      }
    }
    float v = apply_act(acc + (bias ? __ldg(bias + c) : 0.f), g.act);
    if (res) v += __ldg(res + idx);
    out[idx] = v;
  }
}

template <int KT, bool CSR>
cudaError_t launch_tile(const Geom& g, size_t smem, const float* x, const float* weight,
                        const int32_t* indptr, const int32_t* indices, const float* values,
                        int64_t nnz, const float* bias, const float* res, float* out,
                        ErrFlag* flag, cudaStream_t st) {
  dim3 block(kTW, kBY, 1);
  dim3 grid((g.ow + kTW - 1) / kTW, (g.oh + kTH - 1) / kTH, g.n * g.cout);
  dw_tile_kernel<KT, CSR><<<grid, block, smem, st>>>(x, weight, indptr, indices, values, nnz, bias,
                                                      res, out, g, flag);
  return cudaGetLastError();
}

template <bool CSR>
cudaError_t launch_csr_or_dense(const Geom& g, const float* x, const float* weight,
                                const int32_t* indptr, const int32_t* indices, const float* values,
                                int64_t nnz, const float* bias, const float* res, float* out,
                                ErrFlag* flag, cudaStream_t st) {
  const int k = g.kh, S = g.stride;
  const int64_t tiw = static_cast<int64_t>(kTW - 1) * S + k, tih = static_cast<int64_t>(kTH - 1) * S + k;
  const size_t smem = sizeof(float) * static_cast<size_t>(tih * tiw + (CSR ? 2 * kChunk : k * k));
  const int64_t planes = static_cast<int64_t>(g.n) * g.cout;
  const int64_t tiles_y = (g.oh + kTH - 1) / kTH;
  const bool tiled = static_cast<int64_t>(g.oh) * g.ow >= kTileMin && smem <= kMaxSmem &&
                     planes <= 65535 && tiles_y <= 65535;
  if (tiled) {
    if (!CSR && k == 3) return launch_tile<3, CSR>(g, smem, x, weight, indptr, indices, values, nnz, bias, res, out, flag, st);
    if (!CSR && k == 5) return launch_tile<5, CSR>(g, smem, x, weight, indptr, indices, values, nnz, bias, res, out, flag, st);
    if (!CSR && k == 7) return launch_tile<7, CSR>(g, smem, x, weight, indptr, indices, values, nnz, bias, res, out, flag, st);
    return launch_tile<0, CSR>(g, smem, x, weight, indptr, indices, values, nnz, bias, res, out, flag, st);
  }
  const int64_t total = planes * g.oh * g.ow;
  const int64_t blocks = std::min<int64_t>((total + 255) / 256, 1 << 20);
  dw_direct_kernel<CSR><<<static_cast<unsigned>(blocks), 256, 0, st>>>(
      x, weight, indptr, indices, values, nnz, bias, res, out, g, flag);
  return cudaGetLastError();
}
}  // namespace

cudaError_t launch_dw(const Geom& g, const float* x, const float* weight, const int32_t* indptr,
                      const int32_t* indices, const float* values, int64_t nnz, const float* bias,
                      const float* res, float* out, ErrFlag* flag, cudaStream_t st) {
  if (weight) return launch_csr_or_dense<false>(g, x, weight, nullptr, nullptr, nullptr, 0, bias, res, out, flag, st);
  return launch_csr_or_dense<true>(g, x, nullptr, indptr, indices, values, nnz, bias, res, out, flag, st);
}
}  // namespace stc
