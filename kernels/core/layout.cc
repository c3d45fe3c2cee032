#include "layout.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace st {

PhaseLayout make_layout(int32_t H, int32_t W, int32_t kh, int32_t kw, int32_t s, int32_t pad,
                        int32_t row_align) {
  PhaseLayout L{};
  L.s = s;
  L.pad = pad;
  L.kh = kh;
  L.kw = kw;
  L.H = H;
  L.W = W;
  L.OH = (H + 2 * pad - kh) / s + 1;
  L.OW = (W + 2 * pad - kw) / s + 1;
  L.Hq = L.OH + (kh - 1) / s;
  L.Wq = (L.OW + (kw - 1) / s + row_align - 1) / row_align * row_align;
  L.npy = std::min(s, kh);
  L.npx = std::min(s, kw);
  L.plane = (static_cast<int64_t>(L.Hq) * L.Wq + 15) & ~int64_t(15);
  L.chan_pitch = L.plane * L.npy * L.npx;
  return L;
}

int64_t layout_slack(const PhaseLayout& L) { return L.Wq + 64; }

namespace {
// Stride-2 gather dst[j] = src[2 j] for j < n. Scalar it costs more than the depthwise conv it
// feeds (one element per cycle), so x86 gets an AVX-512 permute version chosen at run time.
void gather2_scalar(const float* src, float* dst, int32_t n) {
  for (int32_t j = 0; j < n; ++j) dst[j] = src[2 * j];
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) void gather2_avx512(const float* src, float* dst, int32_t n) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  int32_t j = 0;
  // src[2j .. 2j+31] must be readable: stop one vector early, the tail is scalar.
  for (; j + 16 < n; j += 16) {
    const __m512 a = _mm512_loadu_ps(src + 2 * j), b = _mm512_loadu_ps(src + 2 * j + 16);
    _mm512_storeu_ps(dst + j, _mm512_permutex2var_ps(a, even, b));
  }
  const int32_t r = n - j;  // 0..16 left; masked loads read only src[2j .. 2(n-1)]
  if (r > 0) {
    const int32_t need = 2 * r - 1;
    const __mmask16 ma = static_cast<__mmask16>(need >= 16 ? 0xFFFFu : (1u << need) - 1u);
    const __mmask16 mb = static_cast<__mmask16>(need > 16 ? (1u << (need - 16)) - 1u : 0u);
    const __m512 a = _mm512_maskz_loadu_ps(ma, src + 2 * j), b = _mm512_maskz_loadu_ps(mb, src + 2 * j + 16);
    _mm512_mask_storeu_ps(dst + j, static_cast<__mmask16>((1u << r) - 1u), _mm512_permutex2var_ps(a, even, b));
  }
}
using Gather2 = void (*)(const float*, float*, int32_t);
Gather2 pick_gather2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") ? gather2_avx512 : gather2_scalar;
}
const Gather2 gather2 = pick_gather2();
#else
const auto gather2 = gather2_scalar;
#endif
}  // namespace

void fill_channel(const PhaseLayout& L, const float* src, float* dst) {
  const int32_t s = L.s, pad = L.pad, H = L.H, W = L.W, Wq = L.Wq;
  for (int32_t py = 0; py < L.npy; ++py) {
    for (int32_t px = 0; px < L.npx; ++px) {
      float* P = dst + (static_cast<int64_t>(py) * L.npx + px) * L.plane;
      // Columns j with 0 <= s*j + px - pad < W are copied, the rest are zero padding.
      int32_t jlo = std::max<int32_t>(0, (pad - px + s - 1) / s);
      const int32_t last = W - 1 + pad - px;  // may be negative: then no column is in range
      int32_t jhi = last < 0 ? 0 : std::min<int32_t>(Wq, last / s + 1);
      jlo = std::min(jlo, Wq);
      if (jhi < jlo) jhi = jlo;
      for (int32_t i = 0; i < L.Hq; ++i) {
        float* row = P + static_cast<int64_t>(i) * Wq;
        const int32_t y = s * i + py - pad;
        if (y < 0 || y >= H) {
          std::memset(row, 0, sizeof(float) * Wq);
          continue;
        }
        const float* srow = src + static_cast<int64_t>(y) * W;
        for (int32_t j = 0; j < jlo; ++j) row[j] = 0.f;
        if (s == 1) {
          std::memcpy(row + jlo, srow + (jlo + px - pad), sizeof(float) * (jhi - jlo));
        } else if (s == 2) {
          gather2(srow + (2 * jlo + px - pad), row + jlo, jhi - jlo);
        } else {
          const float* sp = srow + (s * jlo + px - pad);
          for (int32_t j = jlo; j < jhi; ++j, sp += s) row[j] = *sp;
        }
        for (int32_t j = jhi; j < Wq; ++j) row[j] = 0.f;
      }
      const int64_t used = static_cast<int64_t>(L.Hq) * Wq;
      std::memset(P + used, 0, sizeof(float) * (L.plane - used));
    }
  }
}
}  // namespace st
