// Work descriptions handed from the op drivers (core/*.cc) to the per-ISA kernels.
#pragma once
#include <cstdint>

namespace st {

// A sparse conv lowered to "rows x wide positions": output channel r at wide position q is
//   sum_j val[j] * X[off[j] + q]   over j in rowptr[r] .. rowptr[r+1]
// where X is the (padded, stride-phase-split) input of one image and off[j] already holds the
// channel, phase and tap displacement of nonzero j. Wide position q = oy * Wq + ox; columns
// ox >= OW are padding garbage and are never stored. Wq == OW means the layout is compact.
struct ConvJob {
  const float* X;
  const int32_t* rowptr;  // CSR: cout + 1 entries; BSR4x1: ceil(cout / 4) + 1
  const int32_t* off;
  const float* val;       // CSR: one per nonzero; BSR4x1: four per block
  int32_t cout;
  int32_t Q, Wq, OW, OHW;
  const float* bias;      // may be null
  const float* res;       // this image's residual or null
  float* out;             // this image's output
  int32_t act;
  // Optional (ISAs with lane compress): per vector t of the wide positions, wmask[t - wbase] has
  // the lanes with ox < OW and wdst[t - wbase] the output index of the first of them.
  const uint16_t* wmask;
  const int32_t* wdst;
  int32_t wbase;
  // Gathered 1x1 (core/gather.h): X is the raw image, channel c at c * xpitch; kernels copy
  // tiles of kGatherTile positions of all cin channels into a per-thread buffer and off[j] is
  // the channel times kGatherTile. Off (false) for the other layouts.
  bool gather;
  int32_t cin;
  int64_t xpitch;
  // kx-split 3-wide rows (conv2d-csr.h, ISAs with IsaTable::csr_kx_split): non-null gives, per
  // row r, kxseg[4 r + kx] .. kxseg[4 r + kx + 1] = the nonzeros of tap column kx, whose off[]
  // leave kx out; Wq is a whole number of vectors, so every load is vector-aligned.
  const int32_t* kxseg;
  int32_t* failed;        // set to 1 by a kernel that could not get its scratch buffer
};

// Positions per gathered tile; conv task boundaries (core/partition.h kQuantum) are multiples.
constexpr int32_t kGatherTile = 64;

// Depthwise: each channel is its own one-row problem over a per-thread padded copy of its plane.
struct PhaseLayout;
struct DwJob {
  const float* x;         // this image
  int32_t C;
  const PhaseLayout* L;   // per-channel phase layout (core/layout.h), built in a per-thread buffer
  const int32_t* rowptr;  // C + 1
  const int32_t* tap;     // tap id ky * k + kx
  const float* val;
  const int32_t* tap_off; // k * k: tap id -> offset in the per-channel layout
  const float* wdense;    // dwconv2d_dense kernels: [C, k, k] weights (rowptr/tap/val unused)
  const float* bias;
  const float* res;
  float* out;
  int32_t act;
  int32_t* failed;        // set to 1 by a kernel that could not get its scratch buffer
};

struct LinearJob {
  const float* x;         // [n, in]
  int32_t n, in, outf;
  const int32_t* rowptr;
  const int32_t* col;
  const float* val;
  const float* bias;
  float* out;             // [n, outf]
  int32_t act;
  const float* w = nullptr;  // linear_dense kernels: [outf, in] (rowptr/col/val unused)
};

// (k, stride) pairs with a direct depthwise kernel (dwconv2d-dense/dwconv2d-dense.h); others run
// the phase-layout CSR path.
inline bool dw_direct_supported(int32_t k, int32_t s) {
  return (k == 3 || k == 5 || k == 7) && (s == 1 || s == 2);
}

using ConvKernel = void (*)(const ConvJob&, int32_t r0, int32_t r1, int32_t q0, int32_t q1);
using DwKernel = void (*)(const DwJob&, int32_t c0, int32_t c1);
using LinearKernel = void (*)(const LinearJob&, int32_t r0, int32_t r1);

// Kernel signature per op name in kernels.inc.
#define ST_KSIG_conv2d ConvJob const&, int32_t, int32_t, int32_t, int32_t
#define ST_KSIG_dwconv2d DwJob const&, int32_t, int32_t
#define ST_KSIG_linear LinearJob const&, int32_t, int32_t

}  // namespace st
