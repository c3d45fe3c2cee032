// Gathered 1x1 tiles (ConvJob::gather): the positions [q, q + len) of every input channel copied
// into one contiguous per-thread buffer, channel c at c * kGatherTile. Sparse rows then read
// aligned vectors from a block that stays in L1/L2 instead of cin scattered streams, and a short
// last tile (7x7 planes: 49 positions) is padded so it still runs as one multi-vector pass.
// Included by the per-ISA kernel TUs only.
#pragma once
#include "jobs.h"
#include "scratch.h"
#include "simd.h"

namespace st {
namespace {

// Buffer for one tile, or null when the allocation fails (the caller reports it).
inline float* gather_buffer(const ConvJob& j) {
  return static_cast<float*>(scratch(kSlotTile, sizeof(float) * kGatherTile * static_cast<size_t>(j.cin)));
}

// Copies len <= kGatherTile positions from q; lanes up to the next whole vector are zeroed so the
// padded lanes of the last vector compute finite garbage that is never stored.
template <class I>
inline void gather_tile(const ConvJob& j, int32_t q, int32_t len, float* buf) {
  constexpr int W = I::W;
  const int32_t full = len / W, rest = len - full * W;
  for (int32_t c = 0; c < j.cin; ++c) {
    const float* s = j.X + static_cast<int64_t>(c) * j.xpitch + q;
    float* d = buf + static_cast<int64_t>(c) * kGatherTile;
    // The next tile's lines of this channel: a scattered stream per channel that the hardware
    // prefetcher does not follow, fetched while this tile computes (prefetches never fault).
    for (int32_t l = 0; l < kGatherTile; l += 16) __builtin_prefetch(s + kGatherTile + l, 0, 3);
    for (int32_t v = 0; v < full; ++v) I::storeu(d + v * W, I::loadu(s + v * W));
    if (rest) I::storeu(d + full * W, I::load_partial(s + full * W, rest));  // zero-fills lanes >= rest
  }
}

// Gathers [q0, q1) tile by tile and calls pass(block, q, n) for runs of at most `run` positions of
// each tile (block: the run's first position in the buffer). A failed buffer allocation sets
// *j.failed, which the driver reports as ST_ENOMEM.
template <class I, class Pass>
inline void for_each_gathered_run(const ConvJob& j, int32_t q0, int32_t q1, int32_t run, Pass&& pass) {
  float* buf = gather_buffer(j);
  if (!buf) {
    __atomic_store_n(j.failed, 1, __ATOMIC_RELAXED);
    return;
  }
  for (int32_t q = q0; q < q1; q += kGatherTile) {
    const int32_t len = q1 - q < kGatherTile ? q1 - q : kGatherTile;
    gather_tile<I>(j, q, len, buf);
    for (int32_t s = 0; s < len; s += run) pass(buf + s, q + s, len - s < run ? len - s : run);
  }
}
}  // namespace
}  // namespace st
