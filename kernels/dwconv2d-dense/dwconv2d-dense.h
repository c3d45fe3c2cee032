// Direct depthwise conv on NCHW, no copy of the input: per channel, a tile of R output rows x NV
// vectors of output columns lives in registers; every input row the tile needs is loaded once per
// column shift kx and feeds each kernel row ky that reads it (dense), or each live tap is one
// broadcast and R x NV FMAs on rows straight from the plane (sparse). Zero padding comes from range
// masks on the loads (AVX-512 k-masks, AVX2 maskload, a stack copy on NEON), so nothing outside
// the plane is read. Stride 2 loads two vectors and keeps the even lanes.
// Instantiated per ISA by dwconv2d-dense-<isa>.cc (dense) and dwconv2d-csr-<isa>.cc (sparse taps).
#pragma once
#include <type_traits>

#include "../core/epilogue.h"
#include "../core/layout.h"

namespace st {
namespace {

// f(integral_constant<int, i>) for i in [B, E): indices are compile-time, so register arrays stay
// in registers even inside a runtime loop.
template <int B, int E, class F>
inline __attribute__((always_inline)) void sfor(F&& f) {
  if constexpr (B < E) {
    f(std::integral_constant<int, B>{});
    sfor<B + 1, E>(f);
  }
}

struct DwPlane {
  const float* x;    // this channel's H x W input
  const float* res;  // this channel's OH x OW residual or null
  float* out;        // this channel's OH x OW output
  float bias;
  int32_t H, W, OH, OW, pad, act;
};

// Load masks of one column chunk: lanes of vector n, column shift kx, raw half s (stride 2 reads
// S vectors per output vector) that fall inside the input row. Vector n starts at output column
// ox0 + n * W, except that a vector sticking out past OW is moved left to end at OW (when OW >= W):
// its loads then stay inside the row for most kx, and it stores only the lanes no earlier vector
// stored (recomputing them would read a residual that aliases out after it was written).
template <class I, int K, int S, int NV>
struct DwMasks {
  using M = typename I::M;
  M m[NV][K][S];
  M st[NV];          // output lanes vector n stores
  int32_t dx[NV];    // input offset of vector n from the chunk's first input column
  int32_t dox[NV];   // output offset of vector n from ox0
  uint32_t full[K];  // bit n: vector n reads only inside the row at shift kx (plain loads)
  void init(const DwPlane& p, int32_t ox0) {
    constexpr int W = I::W;
    for (int kx = 0; kx < K; ++kx) full[kx] = 0;
    for (int n = 0; n < NV; ++n) {
      const int32_t nominal = ox0 + n * W;
      int32_t oxn = nominal;
      if (oxn + W > p.OW && p.OW >= W) oxn = p.OW - W;
      dx[n] = S * (oxn - ox0);
      dox[n] = oxn - ox0;
      st[n] = I::range_mask(nominal - oxn, p.OW - oxn);
      for (int kx = 0; kx < K; ++kx) {
        bool f = true;
        for (int s = 0; s < S; ++s) {
          const int32_t base = S * oxn - p.pad + kx + s * W;
          m[n][kx][s] = I::range_mask(-base, p.W - base);
          f = f && base >= 0 && base + W <= p.W;
        }
        if (f) full[kx] |= 1u << n;
      }
    }
  }
};

template <class I, int S>
inline __attribute__((always_inline)) typename I::V dw_load(const float* p, const typename I::M* m) {
  if constexpr (S == 1) {
    return I::load_m(p, m[0]);
  } else {
    return I::even(I::load_m(p, m[0]), I::load_m(p + I::W, m[1]));
  }
}

template <class I, int S>
inline __attribute__((always_inline)) typename I::V dw_load_full(const float* p) {
  if constexpr (S == 1) {
    return I::loadu(p);
  } else {
    return I::even(I::loadu(p), I::loadu(p + I::W));
  }
}

template <class I, int R, int NV, class Mk>
inline __attribute__((always_inline)) void dw_store(const DwPlane& p, const Mk& mk, int32_t oy0, int32_t ox0,
                     typename I::V (&acc)[R][NV]) {
  using V = typename I::V;
  const V b = I::set1(p.bias);
  const int32_t rows = p.OH - oy0 < R ? p.OH - oy0 : R;
  sfor<0, R>([&](auto r) __attribute__((always_inline)) {
    if (r >= rows) return;
    const int64_t o = static_cast<int64_t>(oy0 + r) * p.OW + ox0;
    float* dst = p.out + o;
    const float* rs = p.res ? p.res + o : nullptr;
    sfor<0, NV>([&](auto n) __attribute__((always_inline)) {
      V a = apply_act<I>(I::add(acc[r][n], b), p.act);
      if (rs) a = I::add(a, I::load_m(rs + mk.dox[n], mk.st[n]));
      I::store_m(dst + mk.dox[n], a, mk.st[n]);
    });
  });
}

// Dense taps w[K*K]: row reuse, everything unrolled at compile time.
template <class I, int K, int S, int R, int NV>
void dw_dense_chunk(const DwPlane& p, const float* w, int32_t ox0) {
  using V = typename I::V;
  constexpr int T = (R - 1) * S + K;  // input rows a tile reads
  DwMasks<I, K, S, NV> mk;
  mk.init(p, ox0);
  const float* xc = p.x + (S * ox0 - p.pad);
  for (int32_t oy0 = 0; oy0 < p.OH; oy0 += R) {
    V acc[R][NV];
    for (int r = 0; r < R; ++r)
      for (int n = 0; n < NV; ++n) acc[r][n] = I::zero();
    const int32_t iy0 = oy0 * S - p.pad;
#pragma GCC unroll 64
    for (int t = 0; t < T; ++t) {
      const int32_t iy = iy0 + t;
      if (iy < 0 || iy >= p.H) continue;  // zero padding rows (and rows past a short last tile)
      const float* row = xc + static_cast<int64_t>(iy) * p.W;
#pragma GCC unroll 16
      for (int kx = 0; kx < K; ++kx) {
        V v[NV];
#pragma GCC unroll 8
        for (int n = 0; n < NV; ++n) v[n] = dw_load<I, S>(row + mk.dx[n] + kx, mk.m[n][kx]);
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) {
          const int ky = t - r * S;
          if (ky < 0 || ky >= K) continue;
          const V wv = I::set1(w[ky * K + kx]);
#pragma GCC unroll 8
          for (int n = 0; n < NV; ++n) acc[r][n] = I::fma(v[n], wv, acc[r][n]);
        }
      }
    }
    dw_store<I, R, NV>(p, mk, oy0, ox0, acc);
  }
}

// Live taps of one channel: tap j reads input rows ky + S*r and column shift kx.
struct DwTaps {
  int32_t n, nfull;  // taps [0, nfull) read only inside the row (dw_sparse_chunk orders them)
  int32_t ky[15 * 15], kx[15 * 15], off[15 * 15];  // off = ky * W + kx
  float w[15 * 15];
};

// Rows above or below the plane read this instead (the column masks still apply), from
// kDwZeroLead floats in: a vector moved left to end at OW in a chunk of its own starts up to
// S * (W - 1) floats before its chunk, and taps inside the row load it whole (the native tests'
// widened matrix found 7 floats read before the array under ASan: 17 columns, AVX2, 3x3).
constexpr int kDwZeroLead = 32;
alignas(64) static const float kDwZeroRow[kDwZeroLead + 256] = {};

// One R x NV tile of the sparse kernel: every live tap is one broadcast and R x NV FMAs. Interior
// tiles (every input row inside the plane) index rows directly; border tiles go through a table
// whose out-of-plane rows point at kDwZeroRow, so the tap loop has no branches.
template <class I, int K, int S, int R, int NV, bool Interior>
void dw_sparse_tile(const DwPlane& p, const DwTaps& tp, const DwMasks<I, K, S, NV>& mk,
                    const float* xc, int32_t oy0, int32_t ox0) {
  using V = typename I::V;
  constexpr int W = I::W;
  constexpr int T = (R - 1) * S + K;
  static_assert(K + (NV + 1) * W * S <= 256 && S * (W - 1) <= kDwZeroLead, "kDwZeroRow too short");
  V acc[R][NV];
  sfor<0, R>([&](auto r) __attribute__((always_inline)) { sfor<0, NV>([&](auto n) __attribute__((always_inline)) { acc[r][n] = I::zero(); }); });
  const int32_t iy0 = oy0 * S - p.pad;
  const int64_t ws = static_cast<int64_t>(S) * p.W;  // input floats between output rows
  const float* rp[T];
  if (!Interior)
    for (int t = 0; t < T; ++t) {
      const int32_t iy = iy0 + t;
      rp[t] = iy >= 0 && iy < p.H ? xc + static_cast<int64_t>(iy) * p.W : kDwZeroRow + kDwZeroLead;
    }
  const float* x0 = xc + static_cast<int64_t>(iy0) * p.W;
  // Taps whose loads stay inside the row first (plain loads), then the border ones (masked):
  // two loops, no per-tap branch.
  for (int32_t j = 0; j < tp.nfull; ++j) {
    const int32_t ky = tp.ky[j], kx = tp.kx[j];
    const V wv = I::set1(tp.w[j]);
    const float* base = x0 + tp.off[j];
    sfor<0, R>([&](auto r) __attribute__((always_inline)) {
      const float* row = Interior ? base + r * ws : rp[ky + r * S] + kx;
      sfor<0, NV>([&](auto n) __attribute__((always_inline)) {
        acc[r][n] = I::fma(dw_load_full<I, S>(row + mk.dx[n]), wv, acc[r][n]);
      });
    });
  }
  for (int32_t j = tp.nfull; j < tp.n; ++j) {
    const int32_t ky = tp.ky[j], kx = tp.kx[j];
    const V wv = I::set1(tp.w[j]);
    const float* base = x0 + tp.off[j];
    sfor<0, R>([&](auto r) __attribute__((always_inline)) {
      const float* row = Interior ? base + r * ws : rp[ky + r * S] + kx;
      sfor<0, NV>([&](auto n) __attribute__((always_inline)) {
        acc[r][n] = I::fma(dw_load<I, S>(row + mk.dx[n], mk.m[n][kx]), wv, acc[r][n]);
      });
    });
  }
  dw_store<I, R, NV>(p, mk, oy0, ox0, acc);
}

template <class I, int K, int S, int R, int NV>
void dw_sparse_chunk(const DwPlane& p, const DwTaps& all, int32_t ox0) {
  DwMasks<I, K, S, NV> mk;
  mk.init(p, ox0);
  DwTaps tp;
  tp.n = all.n;
  int32_t a = 0, b = all.n;
  for (int32_t j = 0; j < all.n; ++j) {
    const int32_t d = mk.full[all.kx[j]] == (1u << NV) - 1u ? a++ : --b;
    tp.ky[d] = all.ky[j];
    tp.kx[d] = all.kx[j];
    tp.off[d] = all.off[j];
    tp.w[d] = all.w[j];
  }
  tp.nfull = a;
  const float* xc = p.x + (S * ox0 - p.pad);
  for (int32_t oy0 = 0; oy0 < p.OH; oy0 += R) {
    const int32_t iy0 = oy0 * S - p.pad;
    if (iy0 >= 0 && iy0 + (R - 1) * S + K <= p.H)
      dw_sparse_tile<I, K, S, R, NV, true>(p, tp, mk, xc, oy0, ox0);
    else
      dw_sparse_tile<I, K, S, R, NV, false>(p, tp, mk, xc, oy0, ox0);
  }
}

// Tile shapes: R output rows x NV vectors (R * NV accumulators). R = 7 divides the usual 56, 28,
// 14 and 7 row planes.
template <class I>
struct DwTile {
  static constexpr int R = 7;
  static constexpr int NVmax = 2;
};

template <class I, int K, int S>
void dw_plane_dense(const DwPlane& p, const float* w) {
  constexpr int W = I::W, NVm = DwTile<I>::NVmax, R = DwTile<I>::R;
  const int32_t nvec = (p.OW + W - 1) / W;
  int32_t v = 0;
  for (; v + NVm <= nvec; v += NVm) dw_dense_chunk<I, K, S, R, NVm>(p, w, v * W);
  if constexpr (NVm > 1)
    for (; v < nvec; ++v) dw_dense_chunk<I, K, S, R, 1>(p, w, v * W);
}

template <class I, int K, int S>
void dw_plane_sparse(const DwPlane& p, const DwTaps& tp) {
  constexpr int W = I::W, NVm = DwTile<I>::NVmax, R = DwTile<I>::R;
  const int32_t nvec = (p.OW + W - 1) / W;
  int32_t v = 0;
  for (; v + NVm <= nvec; v += NVm) dw_sparse_chunk<I, K, S, R, NVm>(p, tp, v * W);
  if constexpr (NVm > 1)
    for (; v < nvec; ++v) dw_sparse_chunk<I, K, S, R, 1>(p, tp, v * W);
}

// A channel with at least this many live taps (of K*K) runs the dense row-reuse kernel with its
// dead taps as zeros. Measured on Zen 5 (1 thread): tap-at-a-time costs about 2x the dense kernel
// per FMA on rows of >= 2 vectors (break-even ~55 % live at stride 1, ~40 % at stride 2), and
// more on short rows where every load is masked (3x3 never wins there, 5x5/7x7 below ~28 %).
inline int32_t dw_dense_cutoff(int32_t K, int32_t S, int32_t OW, int32_t W) {
  double f;
  if (OW >= 2 * W)
    f = S == 1 ? 0.55 : 0.4;
  else
    f = K == 3 ? 0.0 : 0.28;
  return static_cast<int32_t>(K * K * f + 0.999);
}

#if defined(__AVX512F__)
// Small planes on AVX-512 (output rows of <= 8 columns, <= 64 outputs): the row kernel would fill
// at most half of each 16-lane vector. Groups of >= 8 channels mostly take the channel-blocked
// kernel (dwconv2d-cblock.h) instead; this one keeps 3x3 stride 1 and the last few channels.
// Here the whole OH x OW output plane is read as one flat array of <= 4 vectors, output
// o = oy * OW + ox in lane o % 16 of vector o / 16. With "same" padding (2 * pad == K - 1) every
// tap reads a plane of the output's shape at one flat offset:
// at stride 1 the input itself (H x W = OH x OW), at stride 2 one of the four stride-2 phase
// planes of the input (rows py, py + 2, .., columns px, px + 2, ..), copied to a stack tile of
// OH x OW each with zeros past the input's edge. Zero padding is a k-mask per (tap, vector),
// computed once per call; no input outside the plane is read.
template <int K, int S>
struct DwFlat {
  static constexpr int NVmax = 4, Margin = 32, Slot = 64 + 2 * Margin;
  int32_t nv, OH, OW;
  int32_t off[K * K];          // flat offset of tap t in its plane
  __mmask16 m[K * K][NVmax];   // lanes of vector n that tap t reads
  __mmask16 st[NVmax];         // lanes of vector n inside the plane
  // Measured on Zen 5 (1 thread, 576 channels): flat vs row kernel 0.85x (3x3) but 1.09x (5x5)
  // and 1.25x (7x7) at 7x7 stride 1, where the flat kernel's nv * K * K masked loads (mostly
  // line-splitting) outweigh the row kernel's row reuse; 0.73x (3x3), 0.91x (5x5), 0.85x (7x7) at
  // 14x14 stride 2; 0.67x for 3x3 at 4x4. Planes of <= 2 vectors always go flat (the row kernel
  // computes a full 7-row tile there).
  static bool applies(const PhaseLayout& L) {
    if (L.kh != K || L.s != S || 2 * L.pad != K - 1 || L.OW > 8 || L.OH * L.OW > 64) return false;
    return S == 2 || K == 3 || L.OH * L.OW <= 32;
  }
  void init(const PhaseLayout& L) {
    OH = L.OH;
    OW = L.OW;
    const int32_t n_out = OH * OW;
    nv = (n_out + 15) / 16;
    const int32_t pad = L.pad;
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __mmask16 rm[NVmax][K], cm[NVmax][K];
    int32_t oy[NVmax * 16], ox[NVmax * 16];
    for (int32_t o = 0, y = 0, x = 0; o < NVmax * 16; ++o) {
      oy[o] = y;
      ox[o] = x;
      if (++x == OW) x = 0, ++y;
    }
    for (int n = 0; n < NVmax; ++n) {
      const __m512i vy = _mm512_loadu_si512(oy + n * 16), vx = _mm512_loadu_si512(ox + n * 16);
      st[n] = _mm512_cmplt_epi32_mask(_mm512_add_epi32(iota, _mm512_set1_epi32(n * 16)),
                                      _mm512_set1_epi32(n_out));
      for (int k = 0; k < K; ++k) {
        const int32_t d = S == 1 ? k - pad : (k - pad) >> 1;  // floor
        const __m512i ry = _mm512_add_epi32(vy, _mm512_set1_epi32(d));
        const __m512i rx = _mm512_add_epi32(vx, _mm512_set1_epi32(d));
        rm[n][k] = _mm512_cmpge_epi32_mask(ry, _mm512_setzero_si512()) &
                   _mm512_cmplt_epi32_mask(ry, _mm512_set1_epi32(OH));
        cm[n][k] = _mm512_cmpge_epi32_mask(rx, _mm512_setzero_si512()) &
                   _mm512_cmplt_epi32_mask(rx, _mm512_set1_epi32(OW));
      }
    }
    for (int ky = 0; ky < K; ++ky)
      for (int kx = 0; kx < K; ++kx) {
        const int32_t dy = S == 1 ? ky - pad : (ky - pad) >> 1, dx = S == 1 ? kx - pad : (kx - pad) >> 1;
        off[ky * K + kx] = dy * OW + dx;
        for (int n = 0; n < NVmax; ++n) m[ky * K + kx][n] = rm[n][ky] & cm[n][kx] & st[n];
      }
  }
};

template <int K, int S, int NV>
void dw_flat_plane(const DwPlane& p, const float* w, const DwFlat<K, S>& f) {
  using I = IsaAvx512;
  using V = __m512;
  constexpr int Slot = DwFlat<K, S>::Slot, Margin = DwFlat<K, S>::Margin;
  alignas(64) float q[S == 1 ? 1 : 4 * Slot];
  if constexpr (S == 2) {
    // Phase planes: q[(py * 2 + px) * Slot + Margin + a * OW + b] = x[2a + py][2b + px] (0 outside).
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0);
    const __mmask16 lm = I::mask(p.W), sm = I::mask(f.OW);
    for (int32_t a = 0; a < f.OH; ++a)
      for (int py = 0; py < 2; ++py) {
        const int32_t r = 2 * a + py;
        const V v = r < p.H ? _mm512_maskz_loadu_ps(lm, p.x + static_cast<int64_t>(r) * p.W) : I::zero();
        float* d = q + py * 2 * Slot + Margin + a * f.OW;
        _mm512_mask_storeu_ps(d, sm, _mm512_permutexvar_ps(ev, v));
        _mm512_mask_storeu_ps(d + Slot, sm, _mm512_permutexvar_ps(od, v));
      }
  }
  // G accumulator sets (tap t adds into set t % G) keep >= 6 FMA chains in flight.
  constexpr int G = NV >= 3 ? 2 : NV == 2 ? 3 : 6;
  V acc[G][NV];
  sfor<0, G>([&](auto g) __attribute__((always_inline)) {
    sfor<0, NV>([&](auto n) __attribute__((always_inline)) { acc[g][n] = I::zero(); });
  });
  sfor<0, K>([&](auto ky) __attribute__((always_inline)) {
    sfor<0, K>([&](auto kx) __attribute__((always_inline)) {
      constexpr int t = ky * K + kx;
      const float* src;
      if constexpr (S == 1) {
        src = p.x + f.off[t];
      } else {
        constexpr int py = (ky - (K - 1) / 2) & 1, px = (kx - (K - 1) / 2) & 1;
        src = q + (py * 2 + px) * Slot + Margin + f.off[t];
      }
      const V wv = I::set1(w[t]);
      sfor<0, NV>([&](auto n) __attribute__((always_inline)) {
        acc[t % G][n] = I::fma(_mm512_maskz_loadu_ps(f.m[t][n], src + n * 16), wv, acc[t % G][n]);
      });
    });
  });
  const V b = I::set1(p.bias);
  sfor<0, NV>([&](auto n) __attribute__((always_inline)) {
    V sum = acc[0][n];
    sfor<1, G>([&](auto g) __attribute__((always_inline)) { sum = I::add(sum, acc[g][n]); });
    V a = apply_act<I>(I::add(sum, b), p.act);
    if (p.res) a = I::add(a, _mm512_maskz_loadu_ps(f.st[n], p.res + n * 16));
    _mm512_mask_storeu_ps(p.out + n * 16, f.st[n], a);
  });
}

template <int K, int S>
inline void dw_flat_run(const DwPlane& p, const float* w, const DwFlat<K, S>& f) {
  switch (f.nv) {
    case 1: dw_flat_plane<K, S, 1>(p, w, f); break;
    case 2: dw_flat_plane<K, S, 2>(p, w, f); break;
    case 3: dw_flat_plane<K, S, 3>(p, w, f); break;
    default: dw_flat_plane<K, S, 4>(p, w, f); break;
  }
}
#endif

// Dense plane: the flat small-plane kernel where it applies (AVX-512), else the row kernel.
template <class I, int K, int S, class F>
inline void dw_plane_dense_any(const DwPlane& p, const float* w, const F* flat) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<I, IsaAvx512>) {
    if (flat) return dw_flat_run<K, S>(p, w, *flat);
  }
#endif
  (void)flat;
  dw_plane_dense<I, K, S>(p, w);
}

}  // namespace
}  // namespace st
#include "dwconv2d-cblock.h"
namespace st {
namespace {

// Channels [c0, c1) of one image. Dense weights (j.wdense) or the per-channel live taps.
template <class I, int K, int S>
void dw_direct_channels(const DwJob& j, int32_t c0, int32_t c1) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<I, IsaAvx512>) {
    c0 = dw_cblock<K, S>(j, c0, c1);  // small planes, 16 channels at a time
    if (c0 == c1) return;
  }
#endif
  const PhaseLayout& L = *j.L;
  DwPlane p{};
  p.H = L.H;
  p.W = L.W;
  p.OH = L.OH;
  p.OW = L.OW;
  p.pad = L.pad;
  p.act = j.act;
  const int64_t in_plane = static_cast<int64_t>(L.H) * L.W, out_plane = static_cast<int64_t>(L.OH) * L.OW;
  DwTaps tp;
  float wd[K * K];
  const int32_t cutoff = dw_dense_cutoff(K, S, L.OW, I::W);
#if defined(__AVX512F__)
  using Flat = DwFlat<K, S>;
  Flat fl;
  const Flat* flat = nullptr;
  if constexpr (std::is_same_v<I, IsaAvx512>) {
    if (Flat::applies(L)) {
      fl.init(L);
      flat = &fl;
    }
  }
#else
  using Flat = int;
  const Flat* flat = nullptr;
#endif
  for (int32_t c = c0; c < c1; ++c) {
    p.x = j.x + c * in_plane;
    p.out = j.out + c * out_plane;
    p.res = j.res ? j.res + c * out_plane : nullptr;
    p.bias = j.bias ? j.bias[c] : 0.f;
    if (j.wdense) {
      dw_plane_dense_any<I, K, S>(p, j.wdense + static_cast<int64_t>(c) * K * K, flat);
      continue;
    }
    const int32_t b = j.rowptr[c], e = j.rowptr[c + 1];
    if (e - b >= cutoff) {
      for (int t = 0; t < K * K; ++t) wd[t] = 0.f;
      for (int32_t k = b; k < e; ++k) wd[j.tap[k]] += j.val[k];
      dw_plane_dense_any<I, K, S>(p, wd, flat);
      continue;
    }
    tp.n = e - b;
    for (int32_t k = b; k < e; ++k) {
      tp.ky[k - b] = j.tap[k] / K;
      tp.kx[k - b] = j.tap[k] % K;
      tp.off[k - b] = tp.ky[k - b] * p.W + tp.kx[k - b];
      tp.w[k - b] = j.val[k];
    }
    dw_plane_sparse<I, K, S>(p, tp);
  }
}

// Runs the direct kernel when (k, stride) has one; false leaves the job to the caller.
template <class I>
bool dw_direct(const DwJob& j, int32_t c0, int32_t c1) {
  const int32_t k = j.L->kh, s = j.L->s;
#define ST_DW_CASE(K, S) \
  if (k == K && s == S) { dw_direct_channels<I, K, S>(j, c0, c1); return true; }
  ST_DW_CASE(3, 1)
  ST_DW_CASE(3, 2)
  ST_DW_CASE(5, 1)
  ST_DW_CASE(5, 2)
  ST_DW_CASE(7, 1)
  ST_DW_CASE(7, 2)
#undef ST_DW_CASE
  return false;
}
}  // namespace
}  // namespace st
