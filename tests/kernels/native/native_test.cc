// Standalone check of every ISA variant built for this machine against a naive reference conv,
// through the C ABI only (no Python). Run natively, under ASan/UBSan, and as an aarch64 binary
// under qemu (kernels/ci_native_tests.sh). Exit status 0 = all passed.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <atomic>

#include "check.h"
#include "threadpool.h"

namespace {
using native::act_f;
using native::Case;
using native::chance;
using native::expect_rc;
using native::ref_conv;
using native::ref_linear;
using native::uni;

void compare(const char* what, const std::string& isa, const Case& c, const std::vector<float>& got,
             const std::vector<float>& want) {
  char desc[256];
  std::snprintf(desc, sizeof desc, "%s [%s] n=%d cin=%d cout=%d %dx%d k=%d s=%d act=%d sp=%.3f", what, isa.c_str(),
                c.n, c.cin, c.cout, c.h, c.w, c.k, c.stride, c.act, c.sparsity);
  native::compare(desc, got.data(), want);
}

// The same layer through a plan (st_conv2d_plan_*), with each row's entries in reverse order
// (CSR rows need not be sorted; the kx-split arrangement regroups them): run twice, since a plan
// is made once and run many times.
void run_plan(const char* what, const std::string& isa, const Case& c, int block, const std::vector<int32_t>& ip,
              const std::vector<int32_t>& ix, const std::vector<float>& vals, const std::vector<float>& x,
              const std::vector<float>& b, const std::vector<float>& r, const std::vector<float>& want) {
  std::vector<int32_t> rx(ix.size());
  std::vector<float> rv(vals.size());
  for (size_t row = 0; row + 1 < ip.size(); ++row)
    for (int32_t k = ip[row]; k < ip[row + 1]; ++k) {
      const int32_t d = ip[row + 1] - 1 - (k - ip[row]);
      rx[d] = ix[k];
      for (int i = 0; i < block; ++i) rv[static_cast<size_t>(d) * block + i] = vals[static_cast<size_t>(k) * block + i];
    }
  st_conv2d_shape s{99, c.cin, c.h, c.w, c.cout, c.k, c.k, c.stride, c.pad, c.act};  // n: the run's
  st_conv2d_plan* plan = nullptr;
  expect_rc(what, st_conv2d_plan_create(block, &s, ip.data(), ip.size(), rx.data(), rx.size(), rv.data(), rv.size(),
                                        &plan), ST_OK);
  if (!plan) return;
  std::vector<float> out(want.size());
  for (int rep = 0; rep < 2; ++rep) {
    std::fill(out.begin(), out.end(), -1.f);
    expect_rc(what, st_conv2d_plan_run(plan, c.n, x.data(), c.bias ? b.data() : nullptr, c.res ? r.data() : nullptr,
                                       out.data()), ST_OK);
    compare(what, isa, c, out, want);
  }
  st_conv2d_plan_free(plan);
}

void run_case(const std::string& isa, const Case& c) {
  const int OH = (c.h + 2 * c.pad - c.k) / c.stride + 1, OW = (c.w + 2 * c.pad - c.k) / c.stride + 1;
  std::vector<float> x(static_cast<size_t>(c.n) * c.cin * c.h * c.w), b(c.cout), r;
  for (float& v : x) v = uni();
  for (float& v : b) v = uni();
  if (c.res) {
    r.resize(static_cast<size_t>(c.n) * c.cout * OH * OW);
    for (float& v : r) v = uni();
  }
  st_conv2d_shape s{c.n, c.cin, c.h, c.w, c.cout, c.k, c.k, c.stride, c.pad, c.act};
  std::vector<float> out(static_cast<size_t>(c.n) * c.cout * OH * OW);
  const int cols = c.cin * c.k * c.k;

  // CSR over a random mask.
  std::vector<float> wt(static_cast<size_t>(c.cout) * cols, 0.f);
  for (float& v : wt) v = chance(c.sparsity) ? 0.f : uni();
  std::vector<int32_t> ip{0}, ix;
  std::vector<float> vals;
  for (int r0 = 0; r0 < c.cout; ++r0) {
    for (int j = 0; j < cols; ++j)
      if (wt[static_cast<size_t>(r0) * cols + j] != 0.f) {
        ix.push_back(j);
        vals.push_back(wt[static_cast<size_t>(r0) * cols + j]);
      }
    ip.push_back(static_cast<int32_t>(ix.size()));
  }
  expect_rc("conv2d_csr", st_conv2d_csr(&s, x.data(), ip.data(), ip.size(), ix.data(), ix.size(), vals.data(),
                                         vals.size(), c.bias ? b.data() : nullptr, c.res ? r.data() : nullptr,
                                         out.data()), ST_OK);
  const std::vector<float> want_csr = ref_conv(c, false, x, wt, b, r, OH, OW);
  compare("conv2d_csr", isa, c, out, want_csr);
  run_plan("conv2d_csr plan", isa, c, 1, ip, ix, vals, x, b, r, want_csr);

  // BSR4x1 over a block mask (rows past cout are padding).
  const int brows = (c.cout + 3) / 4;
  std::fill(wt.begin(), wt.end(), 0.f);
  std::vector<int32_t> bp{0}, bx;
  std::vector<float> bv;
  for (int br = 0; br < brows; ++br) {
    for (int j = 0; j < cols; ++j) {
      if (chance(c.sparsity)) continue;
      bx.push_back(j);
      for (int i = 0; i < 4; ++i) {
        const float v = uni();
        bv.push_back(4 * br + i < c.cout ? v : 0.f);
        if (4 * br + i < c.cout) wt[static_cast<size_t>(4 * br + i) * cols + j] = v;
      }
    }
    bp.push_back(static_cast<int32_t>(bx.size()));
  }
  expect_rc("conv2d_bsr4x1", st_conv2d_bsr4x1(&s, x.data(), bp.data(), bp.size(), bx.data(), bx.size(), bv.data(),
                                               bv.size(), c.bias ? b.data() : nullptr, c.res ? r.data() : nullptr,
                                               out.data()), ST_OK);
  const std::vector<float> want_bsr = ref_conv(c, false, x, wt, b, r, OH, OW);
  compare("conv2d_bsr4x1", isa, c, out, want_bsr);
  run_plan("conv2d_bsr4x1 plan", isa, c, 4, bp, bx, bv, x, b, r, want_bsr);
}

void run_dw(const std::string& isa, Case c) {
  c.cout = c.cin;
  const int OH = (c.h + 2 * c.pad - c.k) / c.stride + 1, OW = (c.w + 2 * c.pad - c.k) / c.stride + 1;
  std::vector<float> x(static_cast<size_t>(c.n) * c.cin * c.h * c.w), b(c.cin), r;
  for (float& v : x) v = uni();
  for (float& v : b) v = uni();
  if (c.res) {
    r.resize(static_cast<size_t>(c.n) * c.cin * OH * OW);
    for (float& v : r) v = uni();
  }
  const int kk = c.k * c.k;
  std::vector<float> wt(static_cast<size_t>(c.cin) * kk);
  for (float& v : wt) v = chance(c.sparsity) ? 0.f : uni();
  st_conv2d_shape s{c.n, c.cin, c.h, c.w, c.cin, c.k, c.k, c.stride, c.pad, c.act};
  std::vector<float> out(static_cast<size_t>(c.n) * c.cin * OH * OW);
  const std::vector<float> want = ref_conv(c, true, x, wt, b, r, OH, OW);
  expect_rc("dwconv2d_dense", st_dwconv2d_dense(&s, x.data(), wt.data(), c.bias ? b.data() : nullptr,
                                                 c.res ? r.data() : nullptr, out.data()), ST_OK);
  compare("dwconv2d_dense", isa, c, out, want);
  std::vector<int32_t> ip{0}, ix;
  std::vector<float> vals;
  for (int ch = 0; ch < c.cin; ++ch) {
    for (int t = 0; t < kk; ++t)
      if (wt[static_cast<size_t>(ch) * kk + t] != 0.f) {
        ix.push_back(t);
        vals.push_back(wt[static_cast<size_t>(ch) * kk + t]);
      }
    ip.push_back(static_cast<int32_t>(ix.size()));
  }
  expect_rc("dwconv2d_csr", st_dwconv2d_csr(&s, x.data(), ip.data(), ip.size(), ix.data(), ix.size(), vals.data(),
                                             vals.size(), c.bias ? b.data() : nullptr, c.res ? r.data() : nullptr,
                                             out.data()), ST_OK);
  compare("dwconv2d_csr", isa, c, out, want);
}

void run_linear(const std::string& isa, int n, int fin, int fout, double sp, int act) {
  std::vector<float> x(static_cast<size_t>(n) * fin), b(fout), out(static_cast<size_t>(n) * fout), want(out.size());
  for (float& v : x) v = uni();
  for (float& v : b) v = uni();
  std::vector<int32_t> ip{0}, ix;
  std::vector<float> vals;
  for (int o = 0; o < fout; ++o) {
    for (int i = 0; i < fin; ++i)
      if (!chance(sp)) {
        ix.push_back(i);
        vals.push_back(uni());
      }
    ip.push_back(static_cast<int32_t>(ix.size()));
  }
  for (int s = 0; s < n; ++s)
    for (int o = 0; o < fout; ++o) {
      double acc = b[o];
      for (int j = ip[o]; j < ip[o + 1]; ++j) acc += static_cast<double>(vals[j]) * x[static_cast<size_t>(s) * fin + ix[j]];
      want[static_cast<size_t>(s) * fout + o] = act_f(static_cast<float>(acc), act);
    }
  expect_rc("linear_csr", st_linear_csr(n, fin, fout, x.data(), ip.data(), ip.size(), ix.data(), ix.size(),
                                         vals.data(), vals.size(), b.data(), act, out.data()), ST_OK);
  Case c{n, fin, fout, 1, 1, 1, 1, 0, act, sp, true, false};
  compare("linear_csr", isa, c, out, want);
}

// Dense linear: rows in groups of 4 and a remainder, inputs with and without a vector tail.
void run_linear_dense(const std::string& isa, int n, int fin, int fout, int act, bool bias) {
  std::vector<float> x(static_cast<size_t>(n) * fin), w(static_cast<size_t>(fout) * fin), b(fout),
      out(static_cast<size_t>(n) * fout), want(out.size());
  for (float& v : x) v = uni();
  for (float& v : w) v = uni();
  for (float& v : b) v = uni();
  ref_linear(n, fin, fout, x, w, bias ? &b : nullptr, act, &want);
  expect_rc("linear_dense", st_linear_dense(n, fin, fout, x.data(), w.data(), static_cast<int64_t>(w.size()),
                                            bias ? b.data() : nullptr, act, out.data()), ST_OK);
  Case c{n, fin, fout, 1, 1, 1, 1, 0, act, 0.0, bias, false};
  compare("linear_dense", isa, c, out, want);
}

// A plan made under one ISA and run after st_set_isa: it must not run the old choices (the
// kx-split arrangement exists only for some ISAs), it re-plans for the call.
void plan_after_isa_change() {
  const Case c{1, 6, 7, 12, 14, 3, 1, 1, 1, 0.5, true, false};
  const int OH = 12, OW = 14, cols = c.cin * 9;
  std::vector<float> x(static_cast<size_t>(c.cin) * c.h * c.w), b(c.cout), r, wt(static_cast<size_t>(c.cout) * cols);
  for (float& v : x) v = uni();
  for (float& v : b) v = uni();
  std::vector<int32_t> ip{0}, ix;
  std::vector<float> vals;
  for (int row = 0; row < c.cout; ++row) {
    for (int j = 0; j < cols; ++j) {
      wt[static_cast<size_t>(row) * cols + j] = chance(c.sparsity) ? 0.f : uni();
      if (wt[static_cast<size_t>(row) * cols + j] != 0.f) {
        ix.push_back(j);
        vals.push_back(wt[static_cast<size_t>(row) * cols + j]);
      }
    }
    ip.push_back(static_cast<int32_t>(ix.size()));
  }
  const std::vector<float> want = ref_conv(c, false, x, wt, b, r, OH, OW);
  st_set_isa("auto");
  const std::string first = st_isa();
  st_conv2d_shape s{1, c.cin, c.h, c.w, c.cout, 3, 3, 1, 1, c.act};
  st_conv2d_plan* plan = nullptr;
  expect_rc("plan before isa change", st_conv2d_plan_create(1, &s, ip.data(), ip.size(), ix.data(), ix.size(),
                                                            vals.data(), vals.size(), &plan), ST_OK);
  std::vector<float> out(want.size());
  for (const char* isa : {"scalar", "avx2", "neon", "avx512"}) {
    if (!st_isa_available(isa)) continue;
    st_set_isa(isa);
    std::fill(out.begin(), out.end(), -1.f);
    expect_rc("plan after isa change", st_conv2d_plan_run(plan, 1, x.data(), b.data(), nullptr, out.data()), ST_OK);
    compare(("plan made under " + first + ", run under").c_str(), isa, c, out, want);
  }
  st_conv2d_plan_free(plan);
  st_set_isa("auto");
}

void malformed() {
  // 2 output channels, 1 input channel, 1x1: cols = 1.
  st_conv2d_shape s{1, 1, 4, 4, 2, 1, 1, 1, 0, 0};
  float x[16] = {}, out[32], v[2] = {1, 2};
  int32_t ip_ok[3] = {0, 1, 2}, ix_ok[2] = {0, 0};
  expect_rc("csr ok", st_conv2d_csr(&s, x, ip_ok, 3, ix_ok, 2, v, 2, nullptr, nullptr, out), ST_OK);
  int32_t ix_bad[2] = {0, 1};
  expect_rc("csr index out of range", st_conv2d_csr(&s, x, ip_ok, 3, ix_bad, 2, v, 2, nullptr, nullptr, out), ST_EINVAL);
  int32_t ix_neg[2] = {0, -5};
  expect_rc("csr negative index", st_conv2d_csr(&s, x, ip_ok, 3, ix_neg, 2, v, 2, nullptr, nullptr, out), ST_EINVAL);
  int32_t ip_dec[3] = {0, 2, 1};
  expect_rc("csr indptr decreasing", st_conv2d_csr(&s, x, ip_dec, 3, ix_ok, 2, v, 2, nullptr, nullptr, out), ST_EINVAL);
  int32_t ip_end[3] = {0, 1, 5};
  expect_rc("csr indptr end", st_conv2d_csr(&s, x, ip_end, 3, ix_ok, 2, v, 2, nullptr, nullptr, out), ST_EINVAL);
  expect_rc("csr indptr length", st_conv2d_csr(&s, x, ip_ok, 2, ix_ok, 2, v, 2, nullptr, nullptr, out), ST_EINVAL);
  expect_rc("csr values length", st_conv2d_csr(&s, x, ip_ok, 3, ix_ok, 2, v, 1, nullptr, nullptr, out), ST_EINVAL);
  expect_rc("bsr values length", st_conv2d_bsr4x1(&s, x, ip_ok, 2, ix_ok, 1, v, 2, nullptr, nullptr, out), ST_EINVAL);
  st_conv2d_shape bad = s;
  bad.act = 9;
  expect_rc("bad act", st_conv2d_csr(&bad, x, ip_ok, 3, ix_ok, 2, v, 2, nullptr, nullptr, out), ST_EINVAL);
  bad = s;
  bad.kh = bad.kw = 7;
  expect_rc("kernel larger than input", st_conv2d_csr(&bad, x, ip_ok, 3, ix_ok, 2, v, 2, nullptr, nullptr, out), ST_EINVAL);
  expect_rc("null shape", st_conv2d_csr(nullptr, x, ip_ok, 3, ix_ok, 2, v, 2, nullptr, nullptr, out), ST_EINVAL);
  int32_t dwp[2] = {0, 1}, dwi[1] = {9};
  st_conv2d_shape dws{1, 1, 4, 4, 1, 3, 3, 1, 1, 0};
  expect_rc("dw tap out of range", st_dwconv2d_csr(&dws, x, dwp, 2, dwi, 1, v, 1, nullptr, nullptr, out), ST_EINVAL);
  expect_rc("linear index out of range", st_linear_csr(1, 1, 2, x, ip_ok, 3, ix_bad, 2, v, 2, nullptr, 0, out), ST_EINVAL);
  expect_rc("linear_dense weight length", st_linear_dense(1, 2, 2, x, v, 3, nullptr, 0, out), ST_EINVAL);
  expect_rc("linear_dense null weight", st_linear_dense(1, 1, 1, x, nullptr, 1, nullptr, 0, out), ST_EINVAL);
  expect_rc("linear_dense bad act", st_linear_dense(1, 1, 1, x, v, 1, nullptr, 5, out), ST_EINVAL);
  expect_rc("threads 0", st_set_num_threads(0), ST_EINVAL);
  st_conv2d_plan* plan = nullptr;
  expect_rc("plan index out of range", st_conv2d_plan_create(1, &s, ip_ok, 3, ix_bad, 2, v, 2, &plan), ST_EINVAL);
  expect_rc("plan left null", plan == nullptr ? ST_OK : ST_EINVAL, ST_OK);
  expect_rc("plan block 2", st_conv2d_plan_create(2, &s, ip_ok, 3, ix_ok, 2, v, 2, &plan), ST_EINVAL);
  expect_rc("plan null out", st_conv2d_plan_create(1, &s, ip_ok, 3, ix_ok, 2, v, 2, nullptr), ST_EINVAL);
  expect_rc("plan ok", st_conv2d_plan_create(1, &s, ip_ok, 3, ix_ok, 2, v, 2, &plan), ST_OK);
  expect_rc("plan run batch 0", st_conv2d_plan_run(plan, 0, x, nullptr, nullptr, out), ST_EINVAL);
  expect_rc("plan run null x", st_conv2d_plan_run(plan, 1, nullptr, nullptr, nullptr, out), ST_EINVAL);
  expect_rc("plan run null plan", st_conv2d_plan_run(nullptr, 1, x, nullptr, nullptr, out), ST_EINVAL);
  st_conv2d_plan_free(plan);
  st_conv2d_plan_free(nullptr);
}
}  // namespace

// The pool runs every task of every job exactly once, and returns only when all have run:
// jobs of 1-13 tasks back to back, sleeping (spin 0) and polling workers, 2-4 threads.
// An earlier pool that shared one task counter across jobs ran a task twice about once in
// 100000 jobs at spin 0.
void pool_stress() {
  int bad = 0, jobs = 0;
  for (int spin : {0, 5, 200}) {
    st::set_spin_us(spin);
    for (int nt : {2, 3, 4}) {
      st::set_num_threads(nt);
      for (int it = 0; it < 15000; ++it, ++jobs) {
        const int n = 1 + it % 13;
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int> sink{0};
        st::parallel_for(n, [&](int t) {
          for (int k = 0; k < (it % 7) * 40; ++k) sink.fetch_add(k, std::memory_order_relaxed);
          hits[t].fetch_add(1);
        });
        for (int t = 0; t < n; ++t) bad += hits[t].load() != 1;
      }
    }
  }
  st::set_spin_us(st::kDefaultSpinUs);
  st_set_num_threads(1);
  ++native::g_checks;
  if (bad) {
    std::printf("FAIL pool: %d of the tasks of %d jobs did not run exactly once\n", bad, jobs);
    ++native::g_fail;
  }
}

int main() {
  const char* isas[] = {"avx512", "avx2", "neon", "scalar"};
  int tested = 0;
  for (const char* isa : isas) {
    if (!st_isa_available(isa)) {
      std::printf("skip %s: not available on this CPU/build\n", isa);
      continue;
    }
    if (st_set_isa(isa) != ST_OK || std::string(st_isa()) != isa) {
      std::printf("FAIL cannot select %s: %s\n", isa, st_last_error());
      ++native::g_fail;
      continue;
    }
    ++tested;
    for (int threads : {1, 2}) {
      st_set_num_threads(threads);
      for (int k : {1, 3, 5, 7})
        for (int stride : {1, 2})
          for (double sp : {0.0, 0.6, 0.97}) {
            Case c{1 + (k == 3), 3 + k, 5 + (k % 4), 9 + k, 7 + 2 * stride, k, stride, (k - 1) / 2,
                   (k + stride) % 3, sp, sp != 0.6, k != 5};
            if (k == 1 && stride == 1) {
              // Both 1x1 paths on the same shape (auto picks by shape).
              for (const char* path : {"gather", "direct"}) {
                st_set_conv1x1_path(path);
                run_case(isa, c);
              }
              st_set_conv1x1_path("auto");
            } else {
              run_case(isa, c);
            }
            if (k > 1) run_dw(isa, c);
          }
      run_case(isa, Case{1, 40, 36, 20, 19, 3, 1, 1, 1, 0.5, true, true});  // large enough to split
      // 3x3 stride 1 with rows of whole vectors after padding (14 + 2 = 16, 28 + 2 = 30 -> 32): the
      // kx-split arrangement on ISAs with lane shifts; empty rows at 0.97.
      run_case(isa, Case{2, 8, 10, 12, 14, 3, 1, 1, 1, 0.6, true, true});
      run_case(isa, Case{1, 5, 9, 28, 28, 3, 1, 1, 2, 0.97, true, false});
      for (const char* path : {"gather", "direct"}) {  // 1x1 with several tiles and a partial one
        st_set_conv1x1_path(path);
        run_case(isa, Case{2, 33, 30, 13, 11, 1, 1, 0, 2, 0.7, true, true});
      }
      st_set_conv1x1_path("auto");
      run_dw(isa, Case{2, 24, 24, 30, 30, 5, 1, 2, 2, 0.4, true, true});
      // Small planes, channel-blocked on AVX-512 (dwconv2d-cblock.h): 16 + a tail of 9 channels,
      // 7x7 outputs at stride 1 and 2, 4x2 outputs with extra padding.
      run_dw(isa, Case{2, 25, 25, 7, 7, 7, 1, 3, 1, 0.5, true, true});
      run_dw(isa, Case{1, 25, 25, 14, 13, 5, 2, 2, 2, 0.3, true, false});
      run_dw(isa, Case{1, 16, 16, 6, 1, 3, 2, 2, 0, 0.0, false, true});
      run_linear(isa, 3, 300, 17, 0.8, 0);
      run_linear(isa, 1, 5, 3, 0.0, 1);
      run_linear_dense(isa, 1, 300, 17, 1, true);
      run_linear_dense(isa, 3, 37, 6, 2, false);
      run_linear_dense(isa, 2, 3, 4, 0, true);
    }
  }
  plan_after_isa_change();
  malformed();
  pool_stress();
  native::run_matrix();
  const int fails = native::g_fail;
  std::printf("%s: %d checks, %d failures, %d ISA variants tested\n", fails ? "FAILED" : "OK", native::g_checks,
              fails, tested);
  return fails || tested == 0 ? 1 : 0;
}
