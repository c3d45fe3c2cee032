// Depthwise conv, per-channel live taps. k = 3/5/7 with stride 1/2 runs the direct kernel of
// dwconv2d-dense.h (taps straight from the NCHW plane, dense row reuse for mostly-live channels).
// Other shapes: each channel's plane is split into stride phases in a per-thread buffer that stays
// in L1/L2, then runs as a one-row wide SpMM (conv2d-csr.h) whose "nonzeros" are the live taps.
#pragma once
#include "../conv2d-csr/conv2d-csr.h"
#include "../dwconv2d-dense/dwconv2d-dense.h"
#include "../core/layout.h"
#include "../core/scratch.h"

namespace st {
namespace {

template <class I, int NV>
void dwconv2d_csr_impl(const DwJob& j, int32_t c0, int32_t c1) {
  if (dw_direct<I>(j, c0, c1)) return;
  const PhaseLayout& L = *j.L;
  const int64_t slack = layout_slack(L);
  float* P = static_cast<float*>(scratch(kSlotPlane, sizeof(float) * (L.chan_pitch + slack)));
  if (!P) {  // reported by the driver as ST_ENOMEM
    __atomic_store_n(j.failed, 1, __ATOMIC_RELAXED);
    return;
  }
  for (int64_t i = 0; i < slack; ++i) P[L.chan_pitch + i] = 0.f;
  int32_t off[15 * 15];
  // Every channel shares the layout, so the wide-row store table is built once per task.
  ConvJob cj{};
  cj.Wq = L.Wq;
  cj.Q = L.OH * L.Wq;
  cj.OW = L.OW;
  attach_wide_table<I>(cj, 0, cj.Q);
  const int64_t in_plane = static_cast<int64_t>(L.H) * L.W, out_plane = static_cast<int64_t>(L.OH) * L.OW;
  for (int32_t c = c0; c < c1; ++c) {
    const int32_t b = j.rowptr[c], e = j.rowptr[c + 1];
    fill_channel(L, j.x + c * in_plane, P);
    for (int32_t k = b; k < e; ++k) off[k - b] = j.tap_off[j.tap[k]];
    const int32_t rowptr[2] = {0, e - b};
    cj.X = P;
    cj.rowptr = rowptr;
    cj.off = off;
    cj.val = j.val + b;
    cj.cout = 1;
    cj.OHW = static_cast<int32_t>(out_plane);
    cj.bias = j.bias ? j.bias + c : nullptr;
    cj.res = j.res ? j.res + c * out_plane : nullptr;
    cj.out = j.out + c * out_plane;
    cj.act = j.act;
    conv2d_csr_run<I, NV, true>(cj, 0, 1, 0, cj.Q);
  }
}
}  // namespace
}  // namespace st
