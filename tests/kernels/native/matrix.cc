// The kernel tests' cases (tests/kernels/test_conv2d.py, test_dwconv2d.py, test_linear.py; the
// comments name the Python test each block follows) against the dense reference of check.h, under
// every ISA variant built here and 1, 2 and 3 threads. The Python matrices run only the host's
// variants, so on x86 this is what checks NEON, through the aarch64 build under qemu
// (kernels/ci_native_tests.sh): wide rows of whole vectors and tails, kx-split widths, both 1x1
// paths on aligned and unaligned inputs, empty rows and all-zero layers, BSR row blocks past
// cout, depthwise 3/5/7 at stride 1/2 with any padding, mixed dense and sparse channels, small
// planes, in-place residuals, batch 3. Each layer's reference is computed once for all variants.
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <vector>

#include "check.h"

namespace native {
namespace {

// f(label) under every ISA variant built here and each thread count; the settings are restored.
template <class F>
void each_variant(F&& f) {
  const int32_t threads_before = st_get_num_threads();
  for (const char* isa : {"avx512", "avx2", "neon", "scalar"}) {
    if (!st_isa_available(isa)) continue;
    expect_rc(std::string("select ") + isa, st_set_isa(isa), ST_OK);
    for (int t : {1, 2, 3}) {
      st_set_num_threads(t);
      f(std::string(isa) + " t" + std::to_string(t));
    }
  }
  st_set_isa("auto");
  st_set_num_threads(threads_before);
}

std::vector<float> random_vector(size_t n) {
  std::vector<float> v(n);
  for (float& x : v) x = uni();
  return v;
}

struct Conv {
  int n, cin, cout, h, w, k, stride, pad, act;
  double sparsity;
  bool bias, res;
  int empty_row = -1;          // an output channel without entries (its whole block row for BSR)
  int x_skew = 0;              // x starts this many floats past a 64-byte boundary
  const char* path = "auto";   // 1x1 path (st_set_conv1x1_path)
};

struct Sparse {
  std::vector<int32_t> indptr, indices;
  std::vector<float> values;
};

// The same layer with each row's entries in reverse order (rows need not be sorted).
Sparse reversed_rows(const Sparse& a, int block) {
  Sparse r = a;
  for (size_t row = 0; row + 1 < a.indptr.size(); ++row)
    for (int32_t k = a.indptr[row]; k < a.indptr[row + 1]; ++k) {
      const int32_t d = a.indptr[row + 1] - 1 - (k - a.indptr[row]);
      r.indices[d] = a.indices[k];
      std::copy_n(a.values.begin() + static_cast<ptrdiff_t>(k) * block, block,
                  r.values.begin() + static_cast<ptrdiff_t>(d) * block);
    }
  return r;
}

// A random CSR (block 1) or BSR4x1 (block 4) layer and its dense weight [cout, cols].
Sparse random_layer(const Conv& c, int block, std::vector<float>& wt) {
  const int cols = c.cin * c.k * c.k, brows = (c.cout + block - 1) / block;
  wt.assign(static_cast<size_t>(c.cout) * cols, 0.f);
  Sparse s;
  s.indptr.push_back(0);
  for (int br = 0; br < brows; ++br) {
    const bool empty = c.empty_row >= 0 && br == c.empty_row / block;
    for (int j = 0; j < cols; ++j) {
      if (empty || chance(c.sparsity)) continue;
      s.indices.push_back(j);
      for (int i = 0; i < block; ++i) {
        const int row = br * block + i;
        const float v = row < c.cout ? uni() : 0.f;  // rows past cout are padding, kept 0
        s.values.push_back(v);
        if (row < c.cout) wt[static_cast<size_t>(row) * cols + j] = v;
      }
    }
    s.indptr.push_back(static_cast<int32_t>(s.indices.size()));
  }
  return s;
}

// Per call (rows sorted), and through a plan of the same layer with each row's entries reversed,
// run twice (a plan is made once and run many times).
void check_conv_format(const Conv& c, int block) {
  const int OH = out_size(c.h, c.k, c.stride, c.pad), OW = out_size(c.w, c.k, c.stride, c.pad);
  const size_t nx = static_cast<size_t>(c.n) * c.cin * c.h * c.w, ny = static_cast<size_t>(c.n) * c.cout * OH * OW;
  const std::vector<float> xv = random_vector(nx), b = random_vector(c.cout);
  const std::vector<float> r = c.res ? random_vector(ny) : std::vector<float>();
  Buffer x(nx, c.x_skew), out(ny, 0);
  x.assign(xv);
  std::vector<float> wt;
  const Sparse a = random_layer(c, block, wt), rev = reversed_rows(a, block);
  const Case rc{c.n, c.cin, c.cout, c.h, c.w, c.k, c.stride, c.pad, c.act, c.sparsity, c.bias, c.res};
  const std::vector<float> want = ref_conv(rc, false, xv, wt, b, r, OH, OW);
  const float* bias = c.bias ? b.data() : nullptr;
  const float* res = c.res ? r.data() : nullptr;
  char desc[256];
  std::snprintf(desc, sizeof desc, "%s n=%d cin=%d cout=%d %dx%d k=%d s=%d pad=%d act=%d sp=%.3f res=%d skew=%d "
                "empty_row=%d 1x1=%s", block == 1 ? "conv2d_csr" : "conv2d_bsr4x1", c.n, c.cin, c.cout, c.h, c.w,
                c.k, c.stride, c.pad, c.act, c.sparsity, c.res, c.x_skew, c.empty_row, c.path);
  st_conv2d_shape s{c.n, c.cin, c.h, c.w, c.cout, c.k, c.k, c.stride, c.pad, c.act};
  expect_rc(std::string("1x1 path ") + c.path, st_set_conv1x1_path(c.path), ST_OK);
  each_variant([&](const std::string& variant) {
    const std::string what = std::string(desc) + " [" + variant + "]";
    std::fill_n(out.data(), ny, -1.f);
    const auto call = block == 1 ? st_conv2d_csr : st_conv2d_bsr4x1;
    expect_rc(what, call(&s, x.data(), a.indptr.data(), static_cast<int64_t>(a.indptr.size()), a.indices.data(),
                         static_cast<int64_t>(a.indices.size()), a.values.data(),
                         static_cast<int64_t>(a.values.size()), bias, res, out.data()), ST_OK);
    compare(what, out.data(), want);
    st_conv2d_plan* plan = nullptr;
    const std::string pw = what + " plan, reversed rows";
    expect_rc(pw, st_conv2d_plan_create(block, &s, rev.indptr.data(), static_cast<int64_t>(rev.indptr.size()),
                                        rev.indices.data(), static_cast<int64_t>(rev.indices.size()),
                                        rev.values.data(), static_cast<int64_t>(rev.values.size()), &plan),
              ST_OK);
    if (!plan) return;
    for (int rep = 0; rep < 2; ++rep) {
      std::fill_n(out.data(), ny, -1.f);
      expect_rc(pw, st_conv2d_plan_run(plan, c.n, x.data(), bias, res, out.data()), ST_OK);
      compare(pw, out.data(), want);
    }
    st_conv2d_plan_free(plan);
  });
  st_set_conv1x1_path("auto");
}

void check_conv(const Conv& c) {
  check_conv_format(c, 1);
  check_conv_format(c, 4);
}

void conv_matrix() {
  for (int k : {1, 3, 5, 7})  // test_kernel_sizes_and_strides: vector tails, wide-row padding columns
    for (int s : {1, 2}) check_conv({1, 6, 10, 11, 9, k, s, (k - 1) / 2, 1, 0.7, true, false});
  for (int act : {0, 1, 2})  // test_epilogues_batch
    for (bool res : {false, true})
      for (int n : {1, 3}) {
        check_conv({n, 8, 7, 13, 5, 3, 1, 1, act, 0.5, true, res});
        check_conv({n, 8, 9, 6, 17, 1, 2, 0, act, 0.5, false, res});
      }
  for (double sp : {0.0, 0.5, 0.9, 0.99, 0.999}) {  // test_sparsity_levels
    check_conv({1, 32, 24, 14, 14, 1, 1, 0, 0, sp, true, true});
    check_conv({1, 16, 12, 9, 9, 3, 2, 1, 2, sp, true, false});
  }
  // test_threads: split over tasks (rows and wide positions)
  check_conv({2, 48, 40, 30, 29, 3, 1, 1, 1, 0.6, true, true});
  check_conv({1, 96, 70, 28, 28, 1, 1, 0, 0, 0.8, true, false});
  check_conv({1, 24, 20, 33, 31, 5, 2, 2, 2, 0.6, true, true});
  // test_all_zero_layer_and_empty_rows
  check_conv({2, 5, 6, 8, 8, 3, 1, 1, 1, 1.0, true, false});
  check_conv({2, 5, 6, 8, 8, 3, 1, 1, 0, 0.99, true, false, 2});
  // test_one_channel_and_tiny_images
  check_conv({1, 1, 1, 1, 1, 1, 1, 0, 0, 0.0, true, true});
  check_conv({2, 1, 5, 3, 2, 3, 1, 1, 1, 0.3, true, false});
  check_conv({1, 3, 1, 2, 7, 3, 2, 1, 0, 0.3, true, true});
  check_conv({1, 2, 3, 7, 7, 7, 2, 3, 2, 0.2, true, false});
  for (int cout : {1, 2, 3, 5, 13})  // test_cout_not_multiple_of_4_bsr
    check_conv({1, 7, cout, 9, 10, 3, 1, 1, 0, 0.5, true, true});
  // test_conv1x1_paths: gathered tiles or x in place (packed first when unaligned); planes under
  // one tile, whole tiles, a partial last tile; an empty row in every layer.
  struct Hw { int h, w; };
  struct Layer { int n, cin, cout; double sp; bool res; };
  for (const char* path : {"gather", "direct", "auto"})
    for (Hw hw : {Hw{7, 7}, Hw{8, 16}, Hw{9, 17}, Hw{16, 12}, Hw{28, 28}})
      for (Layer l : {Layer{1, 40, 36, 0.5, true}, Layer{3, 9, 7, 0.8, false}, Layer{1, 3, 130, 0.0, true},
                      Layer{1, 100, 20, 0.9, false}})
        for (int skew : {0, 1})  // gathered tiles read x in place whatever its alignment
          if (skew == 0 || std::string(path) != "gather")
            check_conv({l.n, l.cin, l.cout, hw.h, hw.w, 1, 1, 0, 2, l.sp, true, l.res, 1, skew, path});
  for (const char* path : {"gather", "direct"}) {  // test_conv1x1_paths_threads
    check_conv({2, 70, 66, 23, 21, 1, 1, 0, 1, 0.6, true, true, -1, 0, path});
    check_conv({1, 64, 64, 28, 28, 1, 1, 0, 0, 0.9, true, false, -1, 0, path});
  }
  // test_wide_row_widths: rows of whole vectors, just under and over, one tile-sized row
  struct Ksw { int k, s, w; };
  for (Ksw t : {Ksw{3, 1, 14}, Ksw{3, 1, 30}, Ksw{3, 1, 29}, Ksw{5, 1, 60}, Ksw{7, 1, 58}, Ksw{3, 2, 28},
                Ksw{5, 2, 56}, Ksw{3, 1, 9}}) {
    const int pad = (t.k - 1) / 2;
    check_conv({1, 7, 13, 5, t.w, t.k, t.s, pad, 1, 0.6, true, true});
    check_conv({2, 3, 5, 7, t.w, t.k, t.s, pad, 2, 0.0, true, false});
    check_conv({1, 16, 9, 6, t.w, t.k, t.s, pad, 0, 0.97, true, true});
  }
  for (int w : {12, 14, 28, 30, 56, 62})  // test_plans_kx_split_shapes_any_row_order
    for (double sp : {0.5, 0.9, 0.999}) check_conv({2, 6, 11, 5, w, 3, 1, 1, 2, sp, true, true, 3});
}

struct Dw {
  int n, c, h, w, k, stride, pad, act;
  std::vector<int> keep;  // live taps of channel i: exactly keep[i % size] (empty: each with 1 - sparsity)
  double sparsity;
  bool bias, res;
  bool inplace = false;   // out is the residual's buffer
};

// Dense weights and the per-channel list of live taps, the same layer.
void check_dw(const Dw& d) {
  const int OH = out_size(d.h, d.k, d.stride, d.pad), OW = out_size(d.w, d.k, d.stride, d.pad), kk = d.k * d.k;
  const size_t ny = static_cast<size_t>(d.n) * d.c * OH * OW;
  const std::vector<float> x = random_vector(static_cast<size_t>(d.n) * d.c * d.h * d.w), b = random_vector(d.c);
  const std::vector<float> r = d.res ? random_vector(ny) : std::vector<float>();
  std::vector<float> wt(static_cast<size_t>(d.c) * kk, 0.f);
  for (int ch = 0; ch < d.c; ++ch) {
    std::vector<int> taps(kk);
    for (int t = 0; t < kk; ++t) taps[t] = t;
    std::shuffle(taps.begin(), taps.end(), g_rng);
    const int live = d.keep.empty() ? kk : d.keep[ch % d.keep.size()];
    for (int i = 0; i < live; ++i)
      if (!d.keep.empty() || !chance(d.sparsity)) wt[static_cast<size_t>(ch) * kk + taps[i]] = uni();
  }
  Sparse a;
  a.indptr.push_back(0);
  for (int ch = 0; ch < d.c; ++ch) {
    for (int t = 0; t < kk; ++t)
      if (wt[static_cast<size_t>(ch) * kk + t] != 0.f) {
        a.indices.push_back(t);
        a.values.push_back(wt[static_cast<size_t>(ch) * kk + t]);
      }
    a.indptr.push_back(static_cast<int32_t>(a.indices.size()));
  }
  const Case rc{d.n, d.c, d.c, d.h, d.w, d.k, d.stride, d.pad, d.act, d.sparsity, d.bias, d.res};
  const std::vector<float> want = ref_conv(rc, true, x, wt, b, r, OH, OW);
  char desc[200];
  std::snprintf(desc, sizeof desc, "n=%d c=%d %dx%d k=%d s=%d pad=%d act=%d res=%d inplace=%d", d.n, d.c, d.h, d.w,
                d.k, d.stride, d.pad, d.act, d.res, d.inplace);
  st_conv2d_shape s{d.n, d.c, d.h, d.w, d.c, d.k, d.k, d.stride, d.pad, d.act};
  const float* bias = d.bias ? b.data() : nullptr;
  std::vector<float> out(ny);
  each_variant([&](const std::string& variant) {
    for (bool dense : {true, false}) {
      const std::string what = std::string(dense ? "dwconv2d_dense " : "dwconv2d_csr ") + desc + " [" + variant + "]";
      if (d.inplace)
        out = r;
      else
        std::fill(out.begin(), out.end(), -1.f);
      const float* res = d.inplace ? out.data() : d.res ? r.data() : nullptr;
      const int rcode = dense ? st_dwconv2d_dense(&s, x.data(), wt.data(), bias, res, out.data())
                              : st_dwconv2d_csr(&s, x.data(), a.indptr.data(), static_cast<int64_t>(a.indptr.size()),
                                                a.indices.data(), static_cast<int64_t>(a.indices.size()),
                                                a.values.data(), static_cast<int64_t>(a.values.size()), bias, res,
                                                out.data());
      expect_rc(what, rcode, ST_OK);
      compare(what, out.data(), want);
    }
  });
}

void dw_matrix() {
  constexpr int kActs[] = {2, 0, 1};  // relu6, none, relu in turn
  for (int k : {3, 5, 7})  // test_kernel_sizes_strides
    for (int s : {1, 2}) {
      check_dw({1, 5, 13, 11, k, s, (k - 1) / 2, 1, {}, 0.5, true, false});
      check_dw({1, 3, 8, 8, k, s, (k - 1) / 2, 0, {}, 0.0, true, true});
    }
  for (int act : {0, 1, 2})  // test_epilogue_residual_batch
    for (int n : {1, 3}) {
      check_dw({n, 6, 9, 17, 3, 1, 1, act, {}, 0.4, true, true});
      check_dw({n, 6, 20, 7, 5, 2, 2, act, {}, 0.4, false, false});
    }
  for (double sp : {0.35, 0.75, 0.95, 1.0}) {  // test_sparse_taps
    check_dw({2, 16, 15, 15, 3, 1, 1, 2, {}, sp, true, true});
    check_dw({1, 8, 14, 14, 7, 2, 3, 0, {}, sp, true, false});
  }
  check_dw({2, 64, 28, 28, 3, 1, 1, 1, {}, 0.0, true, true});  // test_threads_large
  check_dw({1, 48, 30, 30, 5, 2, 2, 2, {}, 0.5, true, false});
  check_dw({1, 1, 1, 1, 3, 1, 1, 0, {}, 0.0, true, true});  // test_tiny
  check_dw({1, 2, 2, 3, 7, 2, 3, 1, {}, 0.3, true, false});
  struct Hw { int h, w; };
  for (int k : {3, 5, 7}) {
    const int kk = k * k;
    for (int s : {1, 2}) {
      // test_direct_wide_rows: row tiles, masked borders, the last vector moved left to end at OW,
      // dense and tap-at-a-time channels in one layer
      for (Hw hw : {Hw{56, 56}, Hw{29, 41}, Hw{16, 33}, Hw{9, 70}})
        check_dw({1, 6, hw.h, hw.w, k, s, (k - 1) / 2, 2, {kk, 1, kk / 2, 0, kk / 4 + 1, kk - 2}, 0, true, true});
      for (int pad : {0, 1, 4})  // test_direct_padding
        if (17 + 2 * pad >= k) check_dw({2, 3, 17, 23, k, s, pad, 0, {kk, 2, kk / 3}, 0, true, true});
      for (Hw hw : {Hw{1, 1}, Hw{2, 9}, Hw{7, 7}, Hw{8, 1}})  // test_direct_one_channel_tiny
        check_dw({3, 1, hw.h, hw.w, k, s, k / 2, 1, {kk - 1}, 0, true, false});
      // test_direct_small_planes, test_channel_blocked_small_planes
      const std::vector<Hw> small = s == 1 ? std::vector<Hw>{{7, 7}, {8, 8}, {4, 4}, {5, 6}, {1, 8}, {3, 2}}
                                           : std::vector<Hw>{{14, 14}, {13, 13}, {16, 16}, {15, 9}, {7, 7}, {2, 5}};
      for (size_t i = 0; i < small.size(); ++i)
        check_dw({3, 5, small[i].h, small[i].w, k, s, (k - 1) / 2, kActs[i % 3],
                  {kk, kk - 1, 1, kk / 2}, 0, true, i % 2 == 0});
      const std::vector<Hw> blocked = s == 1 ? std::vector<Hw>{{7, 7}, {4, 4}, {16, 5}, {2, 8}, {8, 3}}
                                             : std::vector<Hw>{{14, 14}, {13, 15}, {7, 7}, {31, 4}};
      const int chans[] = {16, 21, 24, 40, 9};
      for (size_t i = 0; i < blocked.size(); ++i)
        check_dw({2, chans[i % 5], blocked[i].h, blocked[i].w, k, s, (k - 1) / 2, kActs[i % 3],
                  {kk, 0, 1, kk / 2, kk - 1}, 0, true, i % 2 == 0});
    }
    // test_direct_small_planes_inplace_and_pad
    struct Shw { int s, hw; };
    for (Shw t : {Shw{1, 7}, Shw{2, 14}, Shw{1, 5}, Shw{2, 9}}) {
      check_dw({3, 4, t.hw, t.hw, k, t.s, (k - 1) / 2, 1, {kk, 3}, 0, true, true, true});
      for (int pad : {0, k / 2 + 1})  // not "same": the row kernel
        if (t.hw + 2 * pad >= k) check_dw({1, 3, t.hw, t.hw, k, t.s, pad, 0, {kk}, 0, true, true});
    }
    for (Shw t : {Shw{1, 6}, Shw{2, 13}, Shw{2, 3}})  // test_channel_blocked_pad_inplace_threads
      for (int pad : {0, k / 2, k / 2 + 2})
        if (t.hw + 2 * pad >= k) check_dw({1, 33, t.hw, t.hw, k, t.s, pad, 1, {kk, 2, 0}, 0, true, true, pad == k / 2});
  }
  struct Ksh { int k, s, hw; };  // test_direct_inplace_residual: overlapping vectors must not re-read a written lane
  for (Ksh t : {Ksh{3, 1, 40}, Ksh{7, 1, 21}, Ksh{5, 2, 45}})
    check_dw({1, 4, t.hw, t.hw, t.k, t.s, t.k / 2, 1, {t.k * t.k, 3}, 0, true, true, true});
}

// Sparse (CSR of the nonzeros) and dense, the same weights.
void check_linear(int n, int fin, int fout, double sp, int act, bool bias) {
  const std::vector<float> x = random_vector(static_cast<size_t>(n) * fin), b = random_vector(fout);
  std::vector<float> w(static_cast<size_t>(fout) * fin, 0.f), want(static_cast<size_t>(n) * fout);
  Sparse a;
  a.indptr.push_back(0);
  for (int o = 0; o < fout; ++o) {
    for (int i = 0; i < fin; ++i)
      if (!chance(sp)) {
        w[static_cast<size_t>(o) * fin + i] = uni();
        a.indices.push_back(i);
        a.values.push_back(w[static_cast<size_t>(o) * fin + i]);
      }
    a.indptr.push_back(static_cast<int32_t>(a.indices.size()));
  }
  ref_linear(n, fin, fout, x, w, bias ? &b : nullptr, act, &want);
  char desc[128];
  std::snprintf(desc, sizeof desc, "n=%d %d->%d sp=%.3f act=%d bias=%d", n, fin, fout, sp, act, bias);
  std::vector<float> out(want.size());
  each_variant([&](const std::string& variant) {
    for (bool dense : {true, false}) {
      const std::string what = std::string(dense ? "linear_dense " : "linear_csr ") + desc + " [" + variant + "]";
      std::fill(out.begin(), out.end(), -1.f);
      const float* bp = bias ? b.data() : nullptr;
      const int rcode = dense ? st_linear_dense(n, fin, fout, x.data(), w.data(), static_cast<int64_t>(w.size()), bp,
                                                act, out.data())
                              : st_linear_csr(n, fin, fout, x.data(), a.indptr.data(),
                                              static_cast<int64_t>(a.indptr.size()), a.indices.data(),
                                              static_cast<int64_t>(a.indices.size()), a.values.data(),
                                              static_cast<int64_t>(a.values.size()), bp, act, out.data());
      expect_rc(what, rcode, ST_OK);
      compare(what, out.data(), want);
    }
  });
}

void linear_matrix() {
  struct Io { int fin, fout; };
  for (int n : {1, 3})  // test_linear: groups of 4 rows and a remainder, inputs under one vector, tails
    for (int act : {0, 1, 2})
      for (double sp : {0.0, 0.5, 0.9, 0.999})
        for (Io io : {Io{1, 1}, Io{37, 5}, Io{1280, 100}, Io{16, 7}, Io{3, 9}})
          check_linear(n, io.fin, io.fout, sp, act, true);
  check_linear(4, 512, 1000, 0.8, 0, false);  // test_linear_no_bias_torch
  check_linear(2, 1600, 1001, 0.0, 1, false);  // test_linear_dense_threads_and_out
}
}  // namespace

void run_matrix() {
  const int before = g_checks;
  conv_matrix();
  dw_matrix();
  linear_matrix();
  std::printf("kernel-test matrix: %d checks\n", g_checks - before);
}

}  // namespace native
