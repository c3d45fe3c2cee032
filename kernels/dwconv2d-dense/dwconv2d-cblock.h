// Depthwise conv on small planes (output rows of <= 8 columns), AVX-512: 16 channels at a time.
// Vectorising along a row (the other direct kernels) fills at most half of a 16-lane vector here,
// and every load is masked. Instead the 16 channels' input planes are transposed into one
// zero-bordered tile [PH][PW][16] (a vector = one position of 16 channels), so every tap is a
// plain aligned load, and each output row is a row-reuse kernel like dw_dense_chunk's: per kernel
// row ky, the K weight vectors of that row (16 channels' weights, zeros for dead taps) stay in
// registers and every input vector of the row feeds each output it reaches. Weights are dense
// here: small planes are a small share of a network's time and a per-channel tap list cannot be
// vectorised across channels. Included by dwconv2d-dense.h.
#pragma once
#if defined(__AVX512F__)
#include "../core/scratch.h"

namespace st {
namespace {

// Output rows of at most this many columns take this kernel; taller planes than kMaxOH keep the
// row kernels (their tile would not stay in L1).
constexpr int32_t kCbMaxOW = 8, kCbMaxOH = 16;

// The two transposes cost about H * W + OH * OW vectors per 16 channels against the row and flat
// kernels' masked, half-empty vectors; measured with `benchmarks/kernel_ab.sh HEAD WORKTREE
// "512x7d7p60,..."` (both orders, 1 thread), new kernel vs those: 1.2-1.5x for 5x5 and 7x7 at
// 7^2 and 8^2 (stride 1), 7x7 stride 2 at 14^2 and 7^2, 3x3 stride 2 at 7^2 and 3x3 at 4^2; but
// 1.0x for 3x3 stride 1 at 7^2 and 0.8-0.96x for 3x3 and 5x5 stride 2 from 14^2 (few taps per
// output against a large input to transpose), which keep the older kernels.
inline bool dw_cblock_applies(const PhaseLayout& L) {
  if (L.kh == 3 && L.s == 1 && L.OH * L.OW > 16) return false;
  if (L.s == 2 && L.kh < 7 && L.H * L.W > 64) return false;
  return L.OW <= kCbMaxOW && L.OH <= kCbMaxOH;
}

// One output row (OW columns) of a 16-channel group: acc[ox] = sum over taps of the tile vector at
// (oy * S + ky, ox * S + kx) times the tap's weight vector.
template <int K, int S, int OW>
inline __attribute__((always_inline)) void dw_cblock_row(const float* tile, int32_t PW,
                                                          const float* wv, int32_t oy,
                                                          __m512 (&acc)[OW]) {
  sfor<0, OW>([&](auto ox) __attribute__((always_inline)) { acc[ox] = _mm512_setzero_ps(); });
  for (int ky = 0; ky < K; ++ky) {
    const float* row = tile + static_cast<int64_t>(oy * S + ky) * PW * 16;
    __m512 w[K];
    sfor<0, K>([&](auto kx) __attribute__((always_inline)) { w[kx] = _mm512_load_ps(wv + (ky * K + kx) * 16); });
    sfor<0, (OW - 1) * S + K>([&](auto ix) __attribute__((always_inline)) {
      const __m512 v = _mm512_load_ps(row + ix * 16);
      sfor<0, K>([&](auto kx) __attribute__((always_inline)) {
        constexpr int d = static_cast<int>(ix) - static_cast<int>(kx);
        if constexpr (d >= 0 && d % S == 0 && d / S < OW) acc[d / S] = _mm512_fmadd_ps(v, w[kx], acc[d / S]);
      });
    });
  }
}

// r[i] lane j <- r[j] lane i.
inline __attribute__((always_inline)) void transpose16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xDD);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xDD);
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
  }
}

// Channels [c0, c0 + n) (n <= 16) of the job, OW a compile-time width; tile: PH x PW vectors (the
// input rows and columns the outputs read). wts: [K*K][16] weights, bias: 16 lanes. Both
// transposes go 16 positions x 16 channels at a time through registers.
template <int K, int S, int OW>
void dw_cblock_group(const DwJob& j, const PhaseLayout& L, float* tile, int32_t PH, int32_t PW,
                     int32_t c0, int32_t n, const float* wts, const float* bias) {
  const int32_t hw = L.H * L.W, ohw = L.OH * OW;
  const float* x = j.x + static_cast<int64_t>(c0) * hw;
  // In: tile[((iy + pad) * PW + ix + pad) * 16 + ci] = x[c0 + ci][iy][ix], zero where no input.
  for (int32_t t = 0; t < PH * PW; ++t) _mm512_store_ps(tile + t * 16, _mm512_setzero_ps());
  __m512 r[16];
  int32_t iy = 0, ix = 0;  // of position p0 + q
  for (int32_t p0 = 0; p0 < hw; p0 += 16) {
    const __mmask16 m = IsaAvx512::mask(hw - p0 < 16 ? hw - p0 : 16);
    for (int ci = 0; ci < 16; ++ci)
      r[ci] = ci < n ? _mm512_maskz_loadu_ps(m, x + static_cast<int64_t>(ci) * hw + p0) : _mm512_setzero_ps();
    transpose16(r);
    for (int q = 0; q < 16 && p0 + q < hw; ++q) {
      if (iy + L.pad < PH && ix + L.pad < PW)
        _mm512_store_ps(tile + (static_cast<int64_t>(iy + L.pad) * PW + ix + L.pad) * 16, r[q]);
      if (++ix == L.W) ix = 0, ++iy;
    }
  }
  // Outputs, channel-interleaved, then out: act(conv + bias) (+ residual).
  alignas(64) float obuf[kCbMaxOH * kCbMaxOW * 16 + 16 * 16];
  for (int32_t p = ohw; p < (ohw + 15) / 16 * 16; ++p) _mm512_store_ps(obuf + p * 16, _mm512_setzero_ps());
  const __m512 b = _mm512_load_ps(bias);
  for (int32_t oy = 0; oy < L.OH; ++oy) {
    __m512 acc[OW];
    dw_cblock_row<K, S, OW>(tile, PW, wts, oy, acc);
    sfor<0, OW>([&](auto ox) __attribute__((always_inline)) {
      _mm512_store_ps(obuf + (oy * OW + ox) * 16, apply_act<IsaAvx512>(_mm512_add_ps(acc[ox], b), j.act));
    });
  }
  float* out = j.out + static_cast<int64_t>(c0) * ohw;
  const float* res = j.res ? j.res + static_cast<int64_t>(c0) * ohw : nullptr;
  for (int32_t p0 = 0; p0 < ohw; p0 += 16) {
    const __mmask16 m = IsaAvx512::mask(ohw - p0 < 16 ? ohw - p0 : 16);
    for (int q = 0; q < 16; ++q) r[q] = _mm512_load_ps(obuf + (p0 + q) * 16);  // past ohw: zeros, not stored
    transpose16(r);
    for (int ci = 0; ci < n; ++ci) {
      __m512 a = r[ci];
      if (res) a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(m, res + static_cast<int64_t>(ci) * ohw + p0));
      _mm512_mask_storeu_ps(out + static_cast<int64_t>(ci) * ohw + p0, m, a);
    }
  }
}

// Channels [c0, c1) of one image in groups of 16 (dense weights j.wdense or live taps). False if
// the tile buffer could not be had (the caller reports it).
template <int K, int S, int OW>
bool dw_cblock_channels(const DwJob& j, int32_t c0, int32_t c1) {
  const PhaseLayout& L = *j.L;
  const int32_t PH = (L.OH - 1) * S + K, PW = (OW - 1) * S + K;
  float* tile = static_cast<float*>(scratch(kSlotPlane, sizeof(float) * 16 * PH * PW));
  if (!tile) return false;
  alignas(64) float wts[K * K * 16];
  alignas(64) float bias[16];
  for (int32_t c = c0; c < c1; c += 16) {
    const int32_t n = c1 - c < 16 ? c1 - c : 16;
    for (int i = 0; i < K * K * 16; ++i) wts[i] = 0.f;
    for (int i = 0; i < 16; ++i) bias[i] = 0.f;
    for (int32_t ci = 0; ci < n; ++ci) {
      if (j.wdense) {
        for (int t = 0; t < K * K; ++t) wts[t * 16 + ci] = j.wdense[static_cast<int64_t>(c + ci) * K * K + t];
      } else {
        for (int32_t k = j.rowptr[c + ci]; k < j.rowptr[c + ci + 1]; ++k) wts[j.tap[k] * 16 + ci] += j.val[k];
      }
      if (j.bias) bias[ci] = j.bias[c + ci];
    }
    dw_cblock_group<K, S, OW>(j, L, tile, PH, PW, c, n, wts, bias);
  }
  return true;
}

// Runs the channels of [c0, c1) it suits (groups of 16, and a last group of at least 8: fewer
// would leave most lanes idle) when the plane is small enough; returns the first channel left to
// the row kernels (c0 if none ran here).
template <int K, int S>
int32_t dw_cblock(const DwJob& j, int32_t c0, int32_t c1) {
  const PhaseLayout& L = *j.L;
  if (!dw_cblock_applies(L)) return c0;
  int32_t end = c0 + (c1 - c0) / 16 * 16;
  if (c1 - end >= 8) end = c1;
  if (end == c0) return c0;
  bool ok = true;
  switch (L.OW) {
#define ST_CB_OW(N) \
  case N: ok = dw_cblock_channels<K, S, N>(j, c0, end); break;
    ST_CB_OW(1) ST_CB_OW(2) ST_CB_OW(3) ST_CB_OW(4) ST_CB_OW(5) ST_CB_OW(6) ST_CB_OW(7) ST_CB_OW(8)
#undef ST_CB_OW
    default: return c0;
  }
  if (!ok) {
    __atomic_store_n(j.failed, 1, __ATOMIC_RELAXED);
    return c1;
  }
  return end;
}
}  // namespace
}  // namespace st
#endif
