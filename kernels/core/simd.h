// Thin per-ISA vector traits. The kernel templates are written once against this interface and
// instantiated in one translation unit per ISA, each compiled with its own -m flags; a trait is
// only defined when the TU's flags enable its instructions.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON)
#include <arm_neon.h>
#endif

namespace st {
namespace {  // internal linkage: every ISA TU gets its own copy, no cross-ISA ODR merging

struct IsaScalar {
  static constexpr bool kShiftIn = false;
  using V = float;
  static constexpr int W = 1;
  static constexpr const char* name = "scalar";
  static constexpr bool kCompress = false;
  static inline V zero() { return 0.f; }
  static inline V set1(float f) { return f; }
  static inline V loadu(const float* p) { return *p; }
  static inline void storeu(float* p, V v) { *p = v; }
  static inline V fma(V a, V b, V c) { return a * b + c; }
  static inline V add(V a, V b) { return a + b; }
  static inline V max(V a, V b) { return a > b ? a : b; }
  static inline V min(V a, V b) { return a < b ? a : b; }
  static inline V load_partial(const float* p, int) { return *p; }
  static inline void store_partial(float* p, V v, int) { *p = v; }
  static inline float reduce(V v) { return v; }
  static inline V gather(const float* base, const int32_t* idx) { return base[idx[0]]; }
  // Range masks (direct depthwise): lanes lo <= i < hi are loaded, the rest read nothing and are 0.
  using M = bool;
  static inline M range_mask(int lo, int hi) { return lo <= 0 && hi > 0; }
  static inline V load_m(const float* p, M m) { return m ? *p : 0.f; }
  static inline void store_m(float* p, V v, M m) {
    if (m) *p = v;
  }
  static inline V even(V a, V) { return a; }  // lanes 0, 2, .. of the pair (a, b)
};

#if defined(__AVX512F__)
struct IsaAvx512 {
  using V = __m512;
  static constexpr int W = 16;
  static constexpr const char* name = "avx512";
  // Lane compress/expand lets a wide-row tile drop its padding columns with one masked store.
  static constexpr bool kCompress = true;
  // shift_in<N>(lo, hi): lanes N .. W-1 of lo followed by lanes 0 .. N-1 of hi (one valignd).
  static constexpr bool kShiftIn = true;
  template <int N>
  static inline V shift_in(V lo, V hi) {
    return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(hi), _mm512_castps_si512(lo), N));
  }
  static inline V zero() { return _mm512_setzero_ps(); }
  static inline V set1(float f) { return _mm512_set1_ps(f); }
  static inline V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static inline void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
  static inline V max(V a, V b) { return _mm512_max_ps(a, b); }
  static inline V min(V a, V b) { return _mm512_min_ps(a, b); }
  static inline __mmask16 mask(int n) { return (__mmask16)((1u << n) - 1u); }  // n <= 16
  static inline V load_partial(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static inline void store_partial(float* p, V v, int n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  static inline float reduce(V v) { return _mm512_reduce_add_ps(v); }
  // Register-form compress + contiguous masked store: the memory form of vcompressps is
  // microcoded and slow on AMD Zen 4.
  static inline void compress_store(float* p, uint32_t m, V v) {
    const V c = _mm512_maskz_compress_ps((__mmask16)m, v);
    _mm512_mask_storeu_ps(p, mask(__builtin_popcount(m)), c);
  }
  static inline V expand_load(const float* p, uint32_t m) {
    return _mm512_maskz_expand_ps((__mmask16)m, _mm512_maskz_loadu_ps(mask(__builtin_popcount(m)), p));
  }
  static inline V gather(const float* base, const int32_t* idx) {
    return _mm512_i32gather_ps(_mm512_loadu_si512(idx), base, 4);
  }
  using M = __mmask16;
  static inline M range_mask(int lo, int hi) {
    lo = lo < 0 ? 0 : lo;
    hi = hi > 16 ? 16 : hi;
    if (hi <= lo) return 0;
    return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
  }
  static inline V load_m(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static inline void store_m(float* p, V v, M m) { _mm512_mask_storeu_ps(p, m, v); }
  static inline V even(V a, V b) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(a, idx, b);
  }
};
#endif

#if defined(__AVX2__) && defined(__FMA__)
struct IsaAvx2 {
  static constexpr bool kShiftIn = false;
  using V = __m256;
  static constexpr int W = 8;
  static constexpr const char* name = "avx2";
  static constexpr bool kCompress = false;
  static inline V zero() { return _mm256_setzero_ps(); }
  static inline V set1(float f) { return _mm256_set1_ps(f); }
  static inline V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static inline void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static inline V add(V a, V b) { return _mm256_add_ps(a, b); }
  static inline V max(V a, V b) { return _mm256_max_ps(a, b); }
  static inline V min(V a, V b) { return _mm256_min_ps(a, b); }
  static inline __m256i mask(int n) {
    // A sliding window over -1,..,-1,0,..,0 gives the first n lanes set.
    alignas(32) static const int32_t tbl[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tbl + 8 - n));
  }
  static inline V load_partial(const float* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
  static inline void store_partial(float* p, V v, int n) { _mm256_maskstore_ps(p, mask(n), v); }
  static inline float reduce(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static inline V gather(const float* base, const int32_t* idx) {
    return _mm256_i32gather_ps(base, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)), 4);
  }
  using M = __m256i;
  static inline M range_mask(int lo, int hi) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_add_epi32(iota, _mm256_set1_epi32(1)), _mm256_set1_epi32(lo)),
                            _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), iota));
  }
  static inline V load_m(const float* p, M m) { return _mm256_maskload_ps(p, m); }
  static inline void store_m(float* p, V v, M m) { _mm256_maskstore_ps(p, m, v); }
  static inline V even(V a, V b) {
    const __m256 s = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // a0 a2 b0 b2 | a4 a6 b4 b6
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), _MM_SHUFFLE(3, 1, 2, 0)));
  }
};
#endif

#if defined(__ARM_NEON) && defined(__aarch64__)
struct IsaNeon {
  static constexpr bool kShiftIn = false;
  using V = float32x4_t;
  static constexpr int W = 4;
  static constexpr const char* name = "neon";
  static constexpr bool kCompress = false;
  static inline V zero() { return vdupq_n_f32(0.f); }
  static inline V set1(float f) { return vdupq_n_f32(f); }
  static inline V loadu(const float* p) { return vld1q_f32(p); }
  static inline void storeu(float* p, V v) { vst1q_f32(p, v); }
  static inline V fma(V a, V b, V c) { return vfmaq_f32(c, a, b); }
  static inline V add(V a, V b) { return vaddq_f32(a, b); }
  static inline V max(V a, V b) { return vmaxq_f32(a, b); }
  static inline V min(V a, V b) { return vminq_f32(a, b); }
  // No masked loads on NEON: tails go through a small stack buffer so nothing past p[n-1] is read.
  static inline V load_partial(const float* p, int n) {
    float t[4] = {0.f, 0.f, 0.f, 0.f};
    for (int i = 0; i < n; ++i) t[i] = p[i];
    return vld1q_f32(t);
  }
  static inline void store_partial(float* p, V v, int n) {
    float t[4];
    vst1q_f32(t, v);
    for (int i = 0; i < n; ++i) p[i] = t[i];
  }
  static inline float reduce(V v) { return vaddvq_f32(v); }
  static inline V gather(const float* base, const int32_t* idx) {
    float t[4] = {base[idx[0]], base[idx[1]], base[idx[2]], base[idx[3]]};
    return vld1q_f32(t);
  }
  struct M {
    int8_t lo, hi;
  };
  static inline M range_mask(int lo, int hi) {
    lo = lo < 0 ? 0 : lo;
    hi = hi > 4 ? 4 : hi;
    return M{static_cast<int8_t>(lo), static_cast<int8_t>(hi < lo ? lo : hi)};
  }
  static inline V load_m(const float* p, M m) {
    if (m.lo == 0 && m.hi == 4) return vld1q_f32(p);
    float t[4] = {0.f, 0.f, 0.f, 0.f};
    for (int i = m.lo; i < m.hi; ++i) t[i] = p[i];
    return vld1q_f32(t);
  }
  static inline void store_m(float* p, V v, M m) {
    if (m.lo == 0 && m.hi == 4) return vst1q_f32(p, v);
    float t[4];
    vst1q_f32(t, v);
    for (int i = m.lo; i < m.hi; ++i) p[i] = t[i];
  }
  static inline V even(V a, V b) { return vuzp1q_f32(a, b); }
};
#endif

}  // namespace
}  // namespace st
