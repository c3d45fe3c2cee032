// Shared by the native test files: the random source, the dense reference conv and the checks
// that count failures (native_test.cc prints the total and sets the exit status).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "st_kernels.h"

namespace native {

inline int g_fail = 0, g_checks = 0;
inline std::mt19937 g_rng(1234);

inline float uni() { return std::uniform_real_distribution<float>(-1.f, 1.f)(g_rng); }
inline bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(g_rng) < p; }

struct Case {
  int n, cin, cout, h, w, k, stride, pad, act;
  double sparsity;
  bool bias, res;
};

inline int out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

inline float act_f(float v, int act) {
  if (act >= 1 && v < 0) v = 0;
  if (act == 2 && v > 6) v = 6;
  return v;
}

// Dense reference, groups = 1 or depthwise (groups = cin = cout, weight [C, 1, k, k]).
inline std::vector<float> ref_conv(const Case& c, bool dw, const std::vector<float>& x, const std::vector<float>& wt,
                                   const std::vector<float>& b, const std::vector<float>& r, int OH, int OW) {
  std::vector<float> y(static_cast<size_t>(c.n) * c.cout * OH * OW);
  for (int n = 0; n < c.n; ++n)
    for (int co = 0; co < c.cout; ++co)
      for (int oy = 0; oy < OH; ++oy)
        for (int ox = 0; ox < OW; ++ox) {
          double s = c.bias ? b[co] : 0.0;
          const int ci0 = dw ? co : 0, ci1 = dw ? co + 1 : c.cin;
          for (int ci = ci0; ci < ci1; ++ci)
            for (int ky = 0; ky < c.k; ++ky)
              for (int kx = 0; kx < c.k; ++kx) {
                const int iy = oy * c.stride + ky - c.pad, ix = ox * c.stride + kx - c.pad;
                if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
                const int wc = dw ? 0 : ci;
                const float wv = wt[((static_cast<size_t>(co) * (dw ? 1 : c.cin) + wc) * c.k + ky) * c.k + kx];
                s += static_cast<double>(wv) * x[((static_cast<size_t>(n) * c.cin + ci) * c.h + iy) * c.w + ix];
              }
          const size_t o = ((static_cast<size_t>(n) * c.cout + co) * OH + oy) * OW + ox;
          y[o] = act_f(static_cast<float>(s), c.act) + (c.res ? r[o] : 0.f);
        }
  return y;
}

// got vs want within 1e-4 of the larger of 1 and want's largest magnitude; `what` names the case.
// Dense reference of a linear layer: want[s, o] = act(b[o] + sum_i w[o, i] x[s, i]), in double.
inline void ref_linear(int n, int fin, int fout, const std::vector<float>& x, const std::vector<float>& w,
                       const std::vector<float>* b, int act, std::vector<float>* want) {
  for (int s = 0; s < n; ++s)
    for (int o = 0; o < fout; ++o) {
      double acc = b ? (*b)[o] : 0.0;
      for (int i = 0; i < fin; ++i)
        acc += static_cast<double>(w[static_cast<size_t>(o) * fin + i]) * x[static_cast<size_t>(s) * fin + i];
      (*want)[static_cast<size_t>(s) * fout + o] = act_f(static_cast<float>(acc), act);
    }
}

inline void compare(const std::string& what, const float* got, const std::vector<float>& want) {
  ++g_checks;
  float scale = 1.f;
  for (float v : want) scale = std::fmax(scale, std::fabs(v));
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= 1e-4f * scale)) {
      std::printf("FAIL %s: at %zu got %g want %g\n", what.c_str(), i, got[i], want[i]);
      ++g_fail;
      return;
    }
  }
}

inline void expect_rc(const std::string& what, int rc, int want) {
  ++g_checks;
  if (rc != want) {
    std::printf("FAIL %s: rc %d, expected %d (%s)\n", what.c_str(), rc, want, st_last_error());
    ++g_fail;
  } else if (want != ST_OK && std::strlen(st_last_error()) == 0) {
    std::printf("FAIL %s: error without a message\n", what.c_str());
    ++g_fail;
  }
}

// Floats starting `skew` floats past a 64-byte boundary: the kernels read 64-byte-aligned planes
// in place and pack others, so both cases need a buffer whose alignment the test chooses.
class Buffer {
 public:
  Buffer(size_t n, int skew) : store_(n + 16 + static_cast<size_t>(skew)) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(store_.data());
    p_ = store_.data() + ((64 - a % 64) % 64) / sizeof(float) + skew;
    n_ = n;
  }
  float* data() { return p_; }
  size_t size() const { return n_; }
  void assign(const std::vector<float>& v) { std::memcpy(p_, v.data(), sizeof(float) * v.size()); }

 private:
  std::vector<float> store_;
  float* p_;
  size_t n_;
};

// Defined in matrix.cc: the kernel tests' cases (tests/kernels/test_*.py) for every ISA variant
// built here, the reason the aarch64 build exists (the Python matrices skip NEON on x86).
void run_matrix();

}  // namespace native
