// Dense linear, for the fully connected layers a plan keeps dense (a classifier head). At batch 1
// it is a matrix-vector product bound by reading W once: W streams in row order, with no index
// array beside it (the CSR kernel at full density reads twice the bytes and gathers x), and four
// rows share each loaded vector of x.
#pragma once
#include "../core/epilogue.h"

namespace st {
namespace {

// Rows [r, r + R) of sample xn: dot products over the body of whole vectors, then the tail lanes.
template <class I, int R>
inline void linear_dense_rows(const LinearJob& j, int32_t r, const float* xn, float* on) {
  using V = typename I::V;
  constexpr int W = I::W;
  const int32_t tail = j.in % W, body = j.in - tail;
  const float* w[R];
  V acc[R];
  for (int i = 0; i < R; ++i) {
    w[i] = j.w + static_cast<int64_t>(r + i) * j.in;
    acc[i] = I::zero();
  }
  for (int32_t k = 0; k < body; k += W) {
    const V xv = I::loadu(xn + k);
    for (int i = 0; i < R; ++i) acc[i] = I::fma(I::loadu(w[i] + k), xv, acc[i]);
  }
  if (tail) {
    const V xv = I::load_partial(xn + body, tail);
    for (int i = 0; i < R; ++i) acc[i] = I::fma(I::load_partial(w[i] + body, tail), xv, acc[i]);
  }
  for (int i = 0; i < R; ++i)
    on[r + i] = apply_act_scalar(I::reduce(acc[i]) + (j.bias ? j.bias[r + i] : 0.f), j.act);
}

template <class I>
void linear_dense_impl(const LinearJob& j, int32_t r0, int32_t r1) {
  int32_t r = r0;
  // Every sample for a group of rows before the next group: samples after the first find the
  // group's rows (4 x in floats) in cache.
  for (; r + 4 <= r1; r += 4)
    for (int32_t n = 0; n < j.n; ++n)
      linear_dense_rows<I, 4>(j, r, j.x + static_cast<int64_t>(n) * j.in, j.out + static_cast<int64_t>(n) * j.outf);
  for (; r < r1; ++r)
    for (int32_t n = 0; n < j.n; ++n)
      linear_dense_rows<I, 1>(j, r, j.x + static_cast<int64_t>(n) * j.in, j.out + static_cast<int64_t>(n) * j.outf);
}
}  // namespace
}  // namespace st
