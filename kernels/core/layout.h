// Input layouts that turn strided, padded convolution into unit-stride "wide" SpMM.
//
// The zero-padded input xp (H + 2 pad rows, W + 2 pad cols) of one channel is split by stride
// phase: phase (py, px) holds xp[s*i + py][s*j + px] as an Hq x Wq plane with
//   Wq = OW + (kw - 1) / s,  Hq = OH + (kh - 1) / s.
// Tap (ky, kx) then reads phase (ky % s, kx % s) at offset (ky / s) * Wq + kx / s for every
// output (oy, ox) at wide position oy * Wq + ox, so every tap is one contiguous run.
// Only phases py < min(s, kh), px < min(s, kw) are ever read and only those are stored.
#pragma once
#include <cstdint>

namespace st {
struct PhaseLayout {
  int32_t s, pad, kh, kw, H, W, OH, OW;
  int32_t Hq, Wq, npy, npx;
  int64_t plane;        // floats per phase plane, rounded up to 16
  int64_t chan_pitch;   // npy * npx * plane
  int64_t tap_offset(int32_t ky, int32_t kx) const {
    int64_t ph = static_cast<int64_t>(ky % s) * npx + kx % s;
    return ph * plane + static_cast<int64_t>(ky / s) * Wq + kx / s;
  }
  // True when x can be read in place: 1x1, stride 1, no padding.
  bool identity() const { return s == 1 && pad == 0 && kh == 1 && kw == 1; }
};
// row_align > 1 rounds Wq up to a multiple of it (extra columns are zero padding).
PhaseLayout make_layout(int32_t H, int32_t W, int32_t kh, int32_t kw, int32_t s, int32_t pad,
                        int32_t row_align = 1);
// Floats that a kernel may read past the last phase plane (wide rows run over the edge).
int64_t layout_slack(const PhaseLayout& L);
// Writes the phase planes of one channel (src: H x W) to dst (chan_pitch floats).
void fill_channel(const PhaseLayout& L, const float* src, float* dst);
}  // namespace st
