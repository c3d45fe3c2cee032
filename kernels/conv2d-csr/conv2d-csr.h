// Sparse conv, CSR rows with per-nonzero input offsets (see ConvJob): for a tile of NV vectors of
// wide positions, each nonzero is one broadcast and NV FMAs on a contiguous input run.
// Instantiated once per ISA by conv2d-csr-<isa>.cc.
#pragma once
#include "../core/epilogue.h"

namespace st {
namespace {

// Rows [r0, r1) of the tile at wide position q; `last` lanes in the last vector (Full: W).
// Not inlined into the tile loop: there GCC runs out of registers and reloads the pointers of the
// nonzero loop from the stack on every nonzero (measured 1.05-1.3x on 3x3 layers).
template <class I, int NV, bool Full>
__attribute__((noinline)) void csr_rows(const ConvJob& j, int32_t r0, int32_t r1, int32_t q, int last) {
  using V = typename I::V;
  constexpr int W = I::W;
  const float* xq = j.X + q;
  for (int32_t r = r0; r < r1; ++r) {
  const int32_t b = j.rowptr[r], n = j.rowptr[r + 1] - b;
  const float* __restrict val = j.val + b;
  const int32_t* __restrict off = j.off + b;
  V acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = I::zero();
  if (Full) {
    const int pf = (r % NV) * W;
    for (int32_t k = 0; k < n; ++k) {
      const V w = I::set1(val[k]);
      const float* p = xq + off[k];
      // The next tile's input is ~cin scattered streams the hardware prefetcher cannot follow;
      // each nonzero fetches one of its lines, rows rotating which one.
      __builtin_prefetch(p + NV * W + pf, 0, 3);
      for (int v = 0; v < NV; ++v) acc[v] = I::fma(I::loadu(p + v * W), w, acc[v]);
    }
  } else {
    for (int32_t k = 0; k < n; ++k) acc[0] = I::fma(I::load_partial(xq + off[k], last), I::set1(val[k]), acc[0]);
  }
  store_tile<I, NV>(j, r, q, acc, Full ? W : last);
  }
}

// Tiles of NV vectors, then (NV > 4) of 4, then single vectors and a partial one.
template <class I, int NV>
void conv2d_csr_run(const ConvJob& j, int32_t r0, int32_t r1, int32_t q0, int32_t q1) {
  constexpr int W = I::W;
  int32_t q = q0;
  for (; q + NV * W <= q1; q += NV * W) csr_rows<I, NV, true>(j, r0, r1, q, W);
  if constexpr (NV > 4)
    for (; q + 4 * W <= q1; q += 4 * W) csr_rows<I, 4, true>(j, r0, r1, q, W);
  for (; q + W <= q1; q += W) csr_rows<I, 1, true>(j, r0, r1, q, W);
  if (q < q1) csr_rows<I, 1, false>(j, r0, r1, q, q1 - q);
}

// NV: vectors per tile on wide layouts (padded, strided or k > 1: one tile spans rows whose loads
// straddle cache lines, so a longer run per broadcast pays); NVc on compact ones (1x1 in place),
// where shorter tiles measured faster (tails, short rows of positions).
template <class I, int NV, int NVc>
void conv2d_csr_impl(const ConvJob& j, int32_t r0, int32_t r1, int32_t q0, int32_t q1) {
  ConvJob jt = j;
  attach_wide_table<I>(jt, q0, q1);
  if (jt.Wq != jt.OW)
    conv2d_csr_run<I, NV>(jt, r0, r1, q0, q1);
  else
    conv2d_csr_run<I, NVc>(jt, r0, r1, q0, q1);
}
}  // namespace
}  // namespace st
