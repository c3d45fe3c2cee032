// Fused epilogue for one output channel tile: out = act(acc + bias) (+ residual).
// Included by the per-ISA kernel TUs only (vector types differ per TU).
#pragma once
#include <type_traits>

#include "jobs.h"
#include "scratch.h"
#include "simd.h"

namespace st {
namespace {

// One short pass of n positions with as few vectors as cover them: calls
// rows(std::integral_constant<int, N>{}, last) for the smallest N <= NV with N * W >= n, last =
// the lanes of the last vector. A short tile then keeps several independent accumulators instead
// of running as single-vector passes, whose FMA chains are latency-bound.
template <class I, int NV, class Rows>
inline void pass_upto(int32_t n, Rows&& rows) {
  constexpr int W = I::W;
  if constexpr (NV > 1)
    if (n <= (NV - 1) * W) return pass_upto<I, NV - 1>(n, rows);
  rows(std::integral_constant<int, NV>{}, static_cast<int>(n - (NV - 1) * W));
}

template <class I>
inline typename I::V apply_act(typename I::V v, int32_t act) {
  if (act == 1) {
    v = I::max(v, I::zero());
  } else if (act == 2) {
    v = I::min(I::max(v, I::zero()), I::set1(6.f));
  }
  return v;
}

inline float apply_act_scalar(float s, int32_t act) {
  if (act >= 1 && s < 0.f) s = 0.f;
  if (act == 2 && s > 6.f) s = 6.f;
  return s;
}

// Stores NV vectors of row r starting at wide position q; the last vector holds `last` lanes
// (I::W when full). Compact layouts store straight into out; wide layouts drop the padding
// columns (ox >= OW) while copying the tile out of a stack buffer.
template <class I, int NV>
inline void store_tile(const ConvJob& j, int32_t r, int32_t q, typename I::V* acc, int last) {
  using V = typename I::V;
  constexpr int W = I::W;
  const V b = j.bias ? I::set1(j.bias[r]) : I::zero();
  for (int v = 0; v < NV; ++v) acc[v] = apply_act<I>(I::add(acc[v], b), j.act);
  const int64_t row = static_cast<int64_t>(r) * j.OHW;
  if (j.Wq == j.OW) {
    float* o = j.out + row + q;
    const float* rs = j.res ? j.res + row + q : nullptr;
    for (int v = 0; v < NV; ++v) {
      const int n = v == NV - 1 ? last : W;
      V a = acc[v];
      if (n == W) {
        if (rs) a = I::add(a, I::loadu(rs + v * W));
        I::storeu(o + v * W, a);
      } else {
        if (rs) a = I::add(a, I::load_partial(rs + v * W, n));
        I::store_partial(o + v * W, a, n);
      }
    }
    return;
  }
  if constexpr (I::kCompress) {
    if (j.wmask) {
      const int32_t t0 = q / W - j.wbase;
      for (int v = 0; v < NV; ++v) {
        uint32_t m = j.wmask[t0 + v];
        if (v == NV - 1 && last < W) m &= (1u << last) - 1u;
        V a = acc[v];
        const int64_t o = row + j.wdst[t0 + v];
        if (j.res) a = I::add(a, I::expand_load(j.res + o, m));
        I::compress_store(j.out + o, m, a);
      }
      return;
    }
  }
  alignas(64) float tmp[NV * W];
  for (int v = 0; v < NV; ++v) I::storeu(tmp + v * W, acc[v]);
  const int32_t qend = q + (NV - 1) * W + last;
  int32_t oy = q / j.Wq, ox = q - oy * j.Wq;
  for (int32_t p = q; p < qend;) {
    if (ox >= j.OW) {  // skip the padding columns of this wide row
      p += j.Wq - ox;
      ++oy;
      ox = 0;
      continue;
    }
    const int32_t len = (j.OW - ox) < (qend - p) ? (j.OW - ox) : (qend - p);
    const int64_t o = row + static_cast<int64_t>(oy) * j.OW + ox;
    const float* src = tmp + (p - q);
    float* dst = j.out + o;
    if (j.res) {
      const float* rs = j.res + o;
      for (int32_t i = 0; i < len; ++i) dst[i] = src[i] + rs[i];
    } else {
      for (int32_t i = 0; i < len; ++i) dst[i] = src[i];
    }
    p += len;
    ox += len;
  }
}

// store_tile for R whole rows r0.. at once, written so that the accumulators stay in registers:
// store_tile takes a row's vectors by address, which made the compiler keep a caller's
// accumulator block in memory (zeroed and spilled to the stack for every block row). Compact
// layouts (Wide = false) store whole vectors, so `last` must be I::W; wide layouts go through the
// store table (ISAs with lane compress, j.wmask set), read once for all R rows: the lanes of
// vector v with ox < OW go to wdst[v], the last vector keeping `last` lanes.
template <class I, int R, int NV, bool Wide>
__attribute__((always_inline)) inline void store_rows(const ConvJob& j, int32_t r0, int32_t q,
                                                      typename I::V (&acc)[R][NV], int last) {
  using V = typename I::V;
  constexpr int W = I::W;
  // Locals: the stores below could alias the job's fields for all the compiler knows.
  const float* bias = j.bias;
  const float* res = j.res;
  float* out = j.out;
  const int32_t act = j.act;
  const int64_t ohw = j.OHW;
  int64_t dst[NV] = {};  // Wide: offset of vector v within a row (compact: q + v W)
  uint32_t m[NV] = {};    // Wide: its lanes with ox < OW
  if constexpr (Wide) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const int32_t t = q / W - j.wbase + v;
      m[v] = j.wmask[t];
      dst[v] = j.wdst[t];
    }
    if (last < W) m[NV - 1] &= (1u << last) - 1u;
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    const V b = bias ? I::set1(bias[r0 + i]) : I::zero();
    const int64_t row = static_cast<int64_t>(r0 + i) * ohw;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      V a = apply_act<I>(I::add(acc[i][v], b), act);
      if constexpr (Wide) {
        if (res) a = I::add(a, I::expand_load(res + row + dst[v], m[v]));
        I::compress_store(out + row + dst[v], m[v], a);
      } else {
        const int64_t at = row + q + v * W;
        if (res) a = I::add(a, I::loadu(res + at));
        I::storeu(out + at, a);
      }
    }
  }
}

// For ISAs with lane compress: fills the wide-row store table of `j` for positions [q0, q1)
// into per-thread scratch. Returns false (table left unset) when the layout is compact or
// the scratch allocation fails, which selects the generic store path.
template <class I>
inline bool attach_wide_table(ConvJob& j, int32_t q0, int32_t q1) {
  constexpr int W = I::W;
  if (!I::kCompress || j.Wq == j.OW || q1 <= q0) return false;
  const int32_t t0 = q0 / W, t1 = (q1 + W - 1) / W;
  const size_t n = static_cast<size_t>(t1 - t0);
  void* mem = scratch(kSlotKernel, n * (sizeof(int32_t) + sizeof(uint16_t)) + 64);
  if (!mem) return false;
  int32_t* dst = static_cast<int32_t*>(mem);
  uint16_t* msk = reinterpret_cast<uint16_t*>(dst + n);
  for (int32_t t = t0; t < t1; ++t) {
    uint32_t m = 0;
    int32_t first = 0;
    int32_t p = t * W, oy = p / j.Wq, ox = p - oy * j.Wq;
    for (int i = 0; i < W; ++i, ++p, ++ox) {
      if (ox == j.Wq) {
        ox = 0;
        ++oy;
      }
      if (ox < j.OW && p < j.Q) {
        if (!m) first = oy * j.OW + ox;
        m |= 1u << i;
      }
    }
    msk[t - t0] = static_cast<uint16_t>(m);
    dst[t - t0] = first;
  }
  j.wmask = msk;
  j.wdst = dst;
  j.wbase = t0;
  return true;
}
}  // namespace
}  // namespace st
