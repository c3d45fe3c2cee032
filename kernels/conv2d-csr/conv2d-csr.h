// Sparse conv, CSR rows with per-nonzero input offsets (see ConvJob): for a tile of NV vectors of
// wide positions, each nonzero is one broadcast and NV FMAs on a contiguous input run.
// Instantiated once per ISA by conv2d-csr-<isa>.cc.
#pragma once
#include "../core/epilogue.h"
#include "../core/gather.h"

namespace st {
namespace {

// Rows [r0, r1) of the tile whose input run starts at xq and whose outputs start at wide position
// q; `last` lanes are stored from the last vector (Tail; otherwise all I::W), all NV vectors
// are loaded.
// Prefetch: the next tile of a wide layout is ~cin scattered streams the hardware prefetcher
// cannot follow, so each nonzero fetches one of its lines, rows rotating which one. Compact and
// gathered tiles measured faster without it.
// Not inlined into the tile loop: there GCC runs out of registers and reloads the pointers of the
// nonzero loop from the stack on every nonzero (measured 1.05-1.3x on 3x3 layers).
template <class I, int NV, bool Prefetch, bool Tail = false>
__attribute__((noinline)) void csr_rows(const ConvJob& j, int32_t r0, int32_t r1, const float* xq,
                                        int32_t q, int last) {
  using V = typename I::V;
  constexpr int W = I::W;
  for (int32_t r = r0; r < r1; ++r) {
    const int32_t b = j.rowptr[r], n = j.rowptr[r + 1] - b;
    const float* __restrict val = j.val + b;
    const int32_t* __restrict off = j.off + b;
    V acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = I::zero();
    const int pf = (r % NV) * W;
    for (int32_t k = 0; k < n; ++k) {
      const V w = I::set1(val[k]);
      const float* p = xq + off[k];
      if (Prefetch) __builtin_prefetch(p + NV * W + pf, 0, 3);
      for (int v = 0; v < NV; ++v) acc[v] = I::fma(I::loadu(p + v * W), w, acc[v]);
    }
    store_tile<I, NV>(j, r, q, acc, Tail ? last : W);
  }
}

// The short last pass of a run: pass_upto (core/epilogue.h) picks the vectors. Whole vectors are
// loaded: every layout is readable up to the next vector (padded layouts have slack, in-place 1x1
// has whole vectors, gathered tiles are padded).
template <class I, int NV>
inline void csr_pass_upto(const ConvJob& j, int32_t r0, int32_t r1, const float* xq, int32_t q, int32_t n) {
  pass_upto<I, NV>(n, [&](auto nv, int last) {
    csr_rows<I, decltype(nv)::value, false, true>(j, r0, r1, xq, q, last);
  });
}

// Tiles of NV vectors, then one shorter pass for the rest.
template <class I, int NV, bool Prefetch>
void conv2d_csr_run(const ConvJob& j, int32_t r0, int32_t r1, int32_t q0, int32_t q1) {
  constexpr int W = I::W;
  int32_t q = q0;
  for (; q + NV * W <= q1; q += NV * W) csr_rows<I, NV, Prefetch>(j, r0, r1, j.X + q, q, W);
  if (q < q1) csr_pass_upto<I, NV>(j, r0, r1, j.X + q, q, q1 - q);
}

// Gathered 1x1 (core/gather.h): per tile of up to kGatherTile positions, one copy of the input
// block, then passes of up to NV vectors over it; a short tile runs as one pass with fewer
// vectors (the buffer is padded) instead of single-vector passes.
template <class I, int NV>
void conv2d_csr_gathered(const ConvJob& j, int32_t r0, int32_t r1, int32_t q0, int32_t q1) {
  for_each_gathered_run<I>(j, q0, q1, NV * I::W, [&](const float* xb, int32_t q, int32_t n) {
    csr_pass_upto<I, NV>(j, r0, r1, xb, q, n);
  });
}

// kx-split 3-wide rows (ConvJob::kxseg, stride 1): with Wq a whole number of vectors and kx taken
// out of the offsets, every load is vector-aligned (unaligned loads of the plain wide layout split
// cache lines: 1.6x slower in L1). Each kx gets its own partial sum S_kx over NV (+1) vectors and
// the row's output is S_0[p] + S_1[p + 1] + S_2[p + 2], shifted into place once per tile with two
// lane shifts instead of per nonzero. No prefetch: the one of csr_rows measured 2-5 % slower here.
template <class I, int NV, bool Tail = false>
__attribute__((noinline)) void csr_kx3_rows(const ConvJob& j, int32_t r0, int32_t r1, const float* xq,
                                            int32_t q, int last) {
  using V = typename I::V;
  constexpr int W = I::W;
  for (int32_t r = r0; r < r1; ++r) {
    const int32_t* sg = j.kxseg + 4 * static_cast<int64_t>(r);
    V s0[NV], s1[NV + 1], s2[NV + 1];
    for (int v = 0; v < NV; ++v) s0[v] = I::zero();
    for (int v = 0; v <= NV; ++v) s1[v] = s2[v] = I::zero();
    for (int32_t k = sg[0]; k < sg[1]; ++k) {
      const V w = I::set1(j.val[k]);
      const float* p = xq + j.off[k];
      for (int v = 0; v < NV; ++v) s0[v] = I::fma(I::loadu(p + v * W), w, s0[v]);
    }
    for (int32_t k = sg[1]; k < sg[2]; ++k) {
      const V w = I::set1(j.val[k]);
      const float* p = xq + j.off[k];
      for (int v = 0; v <= NV; ++v) s1[v] = I::fma(I::loadu(p + v * W), w, s1[v]);
    }
    for (int32_t k = sg[2]; k < sg[3]; ++k) {
      const V w = I::set1(j.val[k]);
      const float* p = xq + j.off[k];
      for (int v = 0; v <= NV; ++v) s2[v] = I::fma(I::loadu(p + v * W), w, s2[v]);
    }
    V acc[NV];
    for (int v = 0; v < NV; ++v)
      acc[v] = I::add(I::add(s0[v], I::template shift_in<1>(s1[v], s1[v + 1])),
                      I::template shift_in<2>(s2[v], s2[v + 1]));
    store_tile<I, NV>(j, r, q, acc, Tail ? last : W);
  }
}

template <class I, int NV>
void conv2d_csr_kx3_run(const ConvJob& j, int32_t r0, int32_t r1, int32_t q0, int32_t q1) {
  constexpr int W = I::W;
  int32_t q = q0;
  for (; q + NV * W <= q1; q += NV * W) csr_kx3_rows<I, NV>(j, r0, r1, j.X + q, q, W);
  if (q < q1)
    pass_upto<I, NV>(q1 - q, [&](auto nv, int last) {
      csr_kx3_rows<I, decltype(nv)::value, true>(j, r0, r1, j.X + q, q, last);
    });
}

// NV: vectors per tile on wide layouts (padded, strided or k > 1: one tile spans rows whose loads
// straddle cache lines, so a longer run per broadcast pays); NVc on compact and gathered ones
// (1x1), where shorter tiles measured faster, except that a compact tile doubles while the tile's
// runs of every input channel still fit L1 (cin x 2 NVc vectors <= 32 KB: AVX-512 up to 64
// channels, AVX2 up to 128). `PLAN=1 [ISA=avx2] benchmarks/kernel_ab.sh`, both orders: 80-90 %
// sparse layers 1.05-1.18x on AVX-512 (44->24, 54->36, 64->64 at 14^2-112^2) and 1.19-1.40x on
// AVX2; 45-65 % sparse expansions (18->62, 24->78, 36->124) unchanged; at 96-256 channels longer
// tiles gained nothing on AVX-512 and 256->256 28^2 lost 3 %. Those are layers run alone; inside
// the example network (`st-deploy bench --per-layer`, TVM) the same layers took as long as before.
template <class I, int NVc>
inline bool long_compact_tile(const ConvJob& j) {
  return static_cast<int64_t>(j.cin) * 2 * NVc * I::W * static_cast<int64_t>(sizeof(float)) <= 32768;
}

template <class I, int NV, int NVc>
void conv2d_csr_impl(const ConvJob& j, int32_t r0, int32_t r1, int32_t q0, int32_t q1) {
  if (j.gather) return conv2d_csr_gathered<I, NVc>(j, r0, r1, q0, q1);
  ConvJob jt = j;
  attach_wide_table<I>(jt, q0, q1);
  if (j.kxseg) {
    // 3 x (NV + 1) partial sums + the product terms must fit the register file.
    if constexpr (I::kShiftIn) return conv2d_csr_kx3_run<I, (NV < 8 ? NV : 8)>(jt, r0, r1, q0, q1);
    __atomic_store_n(j.failed, 2, __ATOMIC_RELAXED);  // the driver offers kx-split only where supported
    return;
  }
  if (jt.Wq != jt.OW) return conv2d_csr_run<I, NV, true>(jt, r0, r1, q0, q1);
  if constexpr (2 * NVc <= NV)
    if (long_compact_tile<I, NVc>(jt)) return conv2d_csr_run<I, 2 * NVc, false>(jt, r0, r1, q0, q1);
  conv2d_csr_run<I, NVc, false>(jt, r0, r1, q0, q1);
}
}  // namespace
}  // namespace st
