// st_activate: elementwise activations the kernel epilogues do not apply (swish, hswish, sigmoid,
// hsigmoid, gelu, tanh), over a whole tensor, for the ONNX Runtime op's post-pass and the TVM
// export's activation calls.
//
// A libm call per element (std::exp: 4.3 ns here) costs more than the sparse conv before it, and
// GCC leaves portable polynomial loops scalar (clamps and floor become branches and calls), so the
// x86 paths are intrinsics in functions with their own target attribute, chosen once at run time;
// this file is compiled with the library's baseline flags. Elsewhere the scalar loop runs.
//   exp: Cephes' expf (range reduction by ln 2, degree-5 polynomial), relative error < 2e-7.
//   erf: Abramowitz & Stegun 7.1.26 on |x| with exp above, absolute error < 2e-7.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "errors.h"
#include "st_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ST_ACTIVATE_X86 1
#endif

namespace {

constexpr float kExpLo = -87.3f, kExpHi = 88.3f, kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f,
                kLn2Lo = -2.12194440e-4f;
constexpr float kExpP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                            4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
// erf(x) = 1 - t (a1 + t (a2 + ...)) exp(-x^2), t = 1 / (1 + p x), x >= 0
constexpr float kErfP = 0.3275911f;
constexpr float kErfA[5] = {0.254829592f, -0.284496736f, 1.421413741f, -1.453152027f, 1.061405429f};

inline float exp_s(float x) {
  x = std::min(std::max(x, kExpLo), kExpHi);
  const float n = std::floor(x * kLog2e + 0.5f);
  const float r = x - n * kLn2Hi - n * kLn2Lo;
  float p = kExpP[0];
  for (int k = 1; k < 6; ++k) p = p * r + kExpP[k];
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return (p * r * r + r + 1.f) * scale;
}

inline float erf_s(float x) {
  const float a = std::fabs(x), t = 1.f / (1.f + kErfP * a);
  float p = kErfA[4];
  for (int k = 3; k >= 0; --k) p = p * t + kErfA[k];
  const float e = 1.f - p * t * exp_s(-a * a);
  return x < 0.f ? -e : e;
}

inline float act_s(float v, int32_t act) {
  switch (act) {
    case ST_ACT_RELU: return std::max(v, 0.f);
    case ST_ACT_RELU6: return std::min(std::max(v, 0.f), 6.f);
    case ST_ACT_SWISH: return v / (1.f + exp_s(-v));
    case ST_ACT_HSWISH: return v * std::min(std::max(v + 3.f, 0.f), 6.f) * (1.f / 6.f);
    case ST_ACT_SIGMOID: return 1.f / (1.f + exp_s(-v));
    case ST_ACT_HSIGMOID: return std::min(std::max(v + 3.f, 0.f), 6.f) * (1.f / 6.f);
    case ST_ACT_GELU: return 0.5f * v * (1.f + erf_s(v * 0.70710678118654752f));
    case ST_ACT_TANH: return 2.f / (1.f + exp_s(-2.f * v)) - 1.f;
    default: return v;
  }
}

void activate_scalar(const float* x, const float* res, float* out, int64_t n, int32_t act) {
  for (int64_t i = 0; i < n; ++i) out[i] = act_s(x[i], act) + (res ? res[i] : 0.f);
}

#ifdef ST_ACTIVATE_X86
// One body for both widths: V is the vector type, the ops are the width's intrinsics. Macros and
// statement expressions rather than lambdas: a lambda does not inherit its function's target
// attribute, so the intrinsics could not be inlined into it.
#define ST_VEXP(v_)                                                                                       \
  ({                                                                                                       \
    const V ex_x = MIN(MAX((v_), SET1(kExpLo)), SET1(kExpHi));                                             \
    const V ex_n = FLOOR(FMA(ex_x, SET1(kLog2e), half));                                                  \
    V ex_r = FNMA(ex_n, SET1(kLn2Hi), ex_x);                                                              \
    ex_r = FNMA(ex_n, SET1(kLn2Lo), ex_r);                                                                \
    V ex_p = SET1(kExpP[0]);                                                                               \
    for (int k = 1; k < 6; ++k) ex_p = FMA(ex_p, ex_r, SET1(kExpP[k]));                                    \
    ex_p = FMA(MUL(ex_p, ex_r), ex_r, ADD(ex_r, one));                                                     \
    MUL(ex_p, CASTI(SLLI(ADDI(CVT(ex_n), SET1I(127)), 23)));                                              \
  })
#define ST_RELU6P3(v_) MIN(MAX(ADD((v_), SET1(3.f)), zero), SET1(6.f))
#define ST_ACTIVATE_BODY                                                                                  \
  const V one = SET1(1.f), zero = SET1(0.f), half = SET1(0.5f);                                          \
  int64_t i = 0;                                                                                         \
  for (; i + W <= n; i += W) {                                                                           \
    const V v = LOAD(x + i);                                                                             \
    V y;                                                                                                 \
    switch (act) {                                                                                       \
      case ST_ACT_RELU: y = MAX(v, zero); break;                                                         \
      case ST_ACT_RELU6: y = MIN(MAX(v, zero), SET1(6.f)); break;                                        \
      case ST_ACT_SWISH: y = DIV(v, ADD(one, ST_VEXP(SUB(zero, v)))); break;                            \
      case ST_ACT_HSWISH: y = MUL(MUL(v, ST_RELU6P3(v)), SET1(1.f / 6.f)); break;                       \
      case ST_ACT_SIGMOID: y = DIV(one, ADD(one, ST_VEXP(SUB(zero, v)))); break;                        \
      case ST_ACT_HSIGMOID: y = MUL(ST_RELU6P3(v), SET1(1.f / 6.f)); break;                             \
      case ST_ACT_TANH: y = SUB(DIV(SET1(2.f), ADD(one, ST_VEXP(MUL(v, SET1(-2.f))))), one); break;     \
      case ST_ACT_GELU: {                                                                                \
        const V u = MUL(v, SET1(0.70710678118654752f)), a = ABS(u);                                      \
        const V t = DIV(one, FMA(a, SET1(kErfP), one));                                                  \
        V p = SET1(kErfA[4]);                                                                            \
        for (int k = 3; k >= 0; --k) p = FMA(p, t, SET1(kErfA[k]));                                      \
        const V e = FNMA(MUL(p, t), ST_VEXP(SUB(zero, MUL(a, a))), one); /* erf(|u|) */                 \
        /* 1 + erf(u) = 1 + sign(u) erf(|u|) */                                                          \
        y = MUL(MUL(half, v), ADD(one, MUL(e, DIV(u, MAX(a, SET1(1e-30f))))));                           \
        break;                                                                                           \
      }                                                                                                  \
      default: y = v;                                                                                    \
    }                                                                                                    \
    if (res != nullptr) y = ADD(y, LOAD(res + i));                                                       \
    STORE(out + i, y);                                                                                   \
  }                                                                                                      \
  activate_scalar(x + i, res ? res + i : nullptr, out + i, n - i, act);

__attribute__((target("avx512f"))) void activate_avx512(const float* x, const float* res, float* out, int64_t n,
                                                        int32_t act) {
  using V = __m512;
  constexpr int W = 16;
#define SET1 _mm512_set1_ps
#define LOAD _mm512_loadu_ps
#define STORE _mm512_storeu_ps
#define ADD _mm512_add_ps
#define SUB _mm512_sub_ps
#define MUL _mm512_mul_ps
#define DIV _mm512_div_ps
#define MIN _mm512_min_ps
#define MAX _mm512_max_ps
#define FMA _mm512_fmadd_ps
#define FNMA _mm512_fnmadd_ps
#define FLOOR(v) _mm512_roundscale_ps((v), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)
#define CVT _mm512_cvtps_epi32
#define ADDI _mm512_add_epi32
#define SET1I _mm512_set1_epi32
#define SLLI _mm512_slli_epi32
#define CASTI _mm512_castsi512_ps
#define ABS _mm512_abs_ps
  ST_ACTIVATE_BODY
#undef SET1
#undef LOAD
#undef STORE
#undef ADD
#undef SUB
#undef MUL
#undef DIV
#undef MIN
#undef MAX
#undef FMA
#undef FNMA
#undef FLOOR
#undef CVT
#undef ADDI
#undef SET1I
#undef SLLI
#undef CASTI
#undef ABS
}

__attribute__((target("avx2,fma"))) void activate_avx2(const float* x, const float* res, float* out, int64_t n,
                                                       int32_t act) {
  using V = __m256;
  constexpr int W = 8;
#define SET1 _mm256_set1_ps
#define LOAD _mm256_loadu_ps
#define STORE _mm256_storeu_ps
#define ADD _mm256_add_ps
#define SUB _mm256_sub_ps
#define MUL _mm256_mul_ps
#define DIV _mm256_div_ps
#define MIN _mm256_min_ps
#define MAX _mm256_max_ps
#define FMA _mm256_fmadd_ps
#define FNMA _mm256_fnmadd_ps
#define FLOOR _mm256_floor_ps
#define CVT _mm256_cvtps_epi32
#define ADDI _mm256_add_epi32
#define SET1I _mm256_set1_epi32
#define SLLI _mm256_slli_epi32
#define CASTI _mm256_castsi256_ps
#define ABS(v) _mm256_andnot_ps(_mm256_set1_ps(-0.f), (v))
  ST_ACTIVATE_BODY
#undef SET1
#undef LOAD
#undef STORE
#undef ADD
#undef SUB
#undef MUL
#undef DIV
#undef MIN
#undef MAX
#undef FMA
#undef FNMA
#undef FLOOR
#undef CVT
#undef ADDI
#undef SET1I
#undef SLLI
#undef CASTI
#undef ABS
}
#undef ST_ACTIVATE_BODY
#undef ST_VEXP
#undef ST_RELU6P3
#endif

}  // namespace

extern "C" int st_activate(const float* x, const float* residual, float* out, int64_t n, int32_t act) {
  st::clear_error();
  if (n < 0 || (n > 0 && (x == nullptr || out == nullptr)))
    return st::Fail(ST_EINVAL) << "activate: negative length or null pointer";
  if (act < ST_ACT_NONE || act > ST_ACT_TANH) return st::Fail(ST_EINVAL) << "activate: unknown activation code " << act;
#ifdef ST_ACTIVATE_X86
  static const int isa = __builtin_cpu_supports("avx512f") ? 2
                         : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
  if (isa == 2) {
    activate_avx512(x, residual, out, n, act);
    return ST_OK;
  }
  if (isa == 1) {
    activate_avx2(x, residual, out, n, act);
    return ST_OK;
  }
#endif
  activate_scalar(x, residual, out, n, act);
  return ST_OK;
}
