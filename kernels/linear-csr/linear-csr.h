// Sparse linear: one gathered dot product per (row, sample), vectorised over the row's nonzeros.
#pragma once
#include "../core/epilogue.h"

namespace st {
namespace {

template <class I>
void linear_csr_impl(const LinearJob& j, int32_t r0, int32_t r1) {
  using V = typename I::V;
  constexpr int W = I::W;
  for (int32_t r = r0; r < r1; ++r) {
    const int32_t b = j.rowptr[r], e = j.rowptr[r + 1];
    for (int32_t n = 0; n < j.n; ++n) {
      const float* xn = j.x + static_cast<int64_t>(n) * j.in;
      V acc = I::zero();
      int32_t k = b;
      for (; k + W <= e; k += W) acc = I::fma(I::loadu(j.val + k), I::gather(xn, j.col + k), acc);
      float s = I::reduce(acc);
      for (; k < e; ++k) s += j.val[k] * xn[j.col[k]];
      if (j.bias) s += j.bias[r];
      j.out[static_cast<int64_t>(n) * j.outf + r] = apply_act_scalar(s, j.act);
    }
  }
}
}  // namespace
}  // namespace st
