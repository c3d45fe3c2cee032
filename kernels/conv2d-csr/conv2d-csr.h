// Sparse conv, CSR rows with per-nonzero input offsets (see ConvJob): for a tile of NV vectors of
// wide positions, each nonzero is one broadcast and NV FMAs on a contiguous input run.
// Instantiated once per ISA by conv2d-csr-<isa>.cc.
#pragma once
#include "../core/epilogue.h"

namespace st {
namespace {

template <class I, int NV, bool Full>
inline void csr_rows(const ConvJob& j, int32_t r0, int32_t r1, int32_t q, int last) {
  using V = typename I::V;
  constexpr int W = I::W;
  const float* xq = j.X + q;
  for (int32_t r = r0; r < r1; ++r) {
    V acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = I::zero();
    const int32_t b = j.rowptr[r], e = j.rowptr[r + 1];
    const int pf = (r % NV) * W;
    for (int32_t k = b; k < e; ++k) {
      const V w = I::set1(j.val[k]);
      const float* p = xq + j.off[k];
      if (Full) {
        // The next tile's input is ~cin scattered streams the hardware prefetcher cannot follow;
        // each nonzero fetches one of its lines, rows rotating which one.
        __builtin_prefetch(p + NV * W + pf, 0, 3);
        for (int v = 0; v < NV; ++v) acc[v] = I::fma(I::loadu(p + v * W), w, acc[v]);
      } else {
        acc[0] = I::fma(I::load_partial(p, last), w, acc[0]);
      }
    }
    store_tile<I, NV>(j, r, q, acc, Full ? W : last);
  }
}

template <class I, int NV>
void conv2d_csr_run(const ConvJob& j, int32_t r0, int32_t r1, int32_t q0, int32_t q1) {
  constexpr int W = I::W;
  int32_t q = q0;
  for (; q + NV * W <= q1; q += NV * W) csr_rows<I, NV, true>(j, r0, r1, q, W);
  for (; q + W <= q1; q += W) csr_rows<I, 1, true>(j, r0, r1, q, W);
  if (q < q1) csr_rows<I, 1, false>(j, r0, r1, q, q1 - q);
}

template <class I, int NV>
void conv2d_csr_impl(const ConvJob& j, int32_t r0, int32_t r1, int32_t q0, int32_t q1) {
  ConvJob jt = j;
  attach_wide_table<I>(jt, q0, q1);
  conv2d_csr_run<I, NV>(jt, r0, r1, q0, q1);
}
}  // namespace
}  // namespace st
