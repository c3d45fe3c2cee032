// Sparse conv, BSR with 4x1 blocks: one input run feeds 4 output channels, so each loaded
// vector is used by 4 FMAs (CSR uses it once). Block rows past cout are padding and not stored.
#pragma once
#include "../core/epilogue.h"
#include "../core/gather.h"

namespace st {
namespace {

// Block rows [br0, br1) of the tile whose input run starts at xq (outputs at wide position q);
// last and Prefetch as in conv2d-csr.h (but BSR in place measured faster with prefetch on
// compact layouts too).
template <class I, int NV, bool Prefetch, bool Tail = false>
__attribute__((noinline)) void bsr4_rows(const ConvJob& j, int32_t br0, int32_t br1, const float* xq, int32_t q, int last) {
  using V = typename I::V;
  constexpr int W = I::W;
  for (int32_t br = br0; br < br1; ++br) {
    V acc[4][NV];
    for (int i = 0; i < 4; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = I::zero();
    const int32_t b = j.rowptr[br], e = j.rowptr[br + 1];
    const int pf = (br % NV) * W;
    for (int32_t k = b; k < e; ++k) {
      const float* p = xq + j.off[k];
      const float* wv = j.val + 4 * static_cast<int64_t>(k);
      if (Prefetch) __builtin_prefetch(p + NV * W + pf, 0, 3);  // see conv2d-csr.h
      const V w0 = I::set1(wv[0]), w1 = I::set1(wv[1]), w2 = I::set1(wv[2]), w3 = I::set1(wv[3]);
      for (int v = 0; v < NV; ++v) {
        const V xv = I::loadu(p + v * W);
        acc[0][v] = I::fma(xv, w0, acc[0][v]);
        acc[1][v] = I::fma(xv, w1, acc[1][v]);
        acc[2][v] = I::fma(xv, w2, acc[2][v]);
        acc[3][v] = I::fma(xv, w3, acc[3][v]);
      }
    }
    const int32_t rbase = 4 * br;
    const bool whole = rbase + 4 <= j.cout;  // else the block row ends in padding rows
    bool stored = false;
    if (!Tail && whole && j.Wq == j.OW) {
      store_rows<I, 4, NV, false>(j, rbase, q, acc, W);
      stored = true;
    }
    if constexpr (I::kCompress) {
      if (!stored && whole && j.wmask) {
        store_rows<I, 4, NV, true>(j, rbase, q, acc, Tail ? last : W);
        stored = true;
      }
    }
    if (!stored) {
      // Unrolled, and from a copy: a runtime row index or acc's address would keep the
      // accumulators in memory on every path.
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        if (rbase + i < j.cout) {
          V row[NV];
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) row[v] = acc[i][v];
          store_tile<I, NV>(j, rbase + i, q, row, Tail ? last : W);
        }
      }
    }
  }
}

// The short last pass of a run, as csr_pass_upto.
template <class I, int NV>
inline void bsr4_pass_upto(const ConvJob& j, int32_t br0, int32_t br1, const float* xb, int32_t q,
                           int32_t n) {
  pass_upto<I, NV>(n, [&](auto nv, int last) {
    bsr4_rows<I, decltype(nv)::value, false, true>(j, br0, br1, xb, q, last);
  });
}

// Gathered 1x1 (core/gather.h), as conv2d_csr_gathered.
template <class I, int NV>
void conv2d_bsr4x1_gathered(const ConvJob& j, int32_t br0, int32_t br1, int32_t q0, int32_t q1) {
  for_each_gathered_run<I>(j, q0, q1, NV * I::W, [&](const float* xb, int32_t q, int32_t n) {
    bsr4_pass_upto<I, NV>(j, br0, br1, xb, q, n);
  });
}

template <class I, int NV>
void conv2d_bsr4x1_impl(const ConvJob& job, int32_t br0, int32_t br1, int32_t q0, int32_t q1) {
  constexpr int W = I::W;
  if (job.gather) return conv2d_bsr4x1_gathered<I, NV>(job, br0, br1, q0, q1);
  ConvJob j = job;
  attach_wide_table<I>(j, q0, q1);
  int32_t q = q0;
  for (; q + NV * W <= q1; q += NV * W) bsr4_rows<I, NV, true>(j, br0, br1, j.X + q, q, W);
  if (q < q1) bsr4_pass_upto<I, NV>(j, br0, br1, j.X + q, q, q1 - q);
}
}  // namespace
}  // namespace st
