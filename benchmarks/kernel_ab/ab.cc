// Same-process A/B of two builds of the kernel core (their C ABI), one layer at a time.
//
//   ab A.so B.so [SPEC]      SPEC: comma list of CINxHWkK[sS][oCOUT][pPCT], e.g. 64x56k3,144x28k1o36p98,
//                            and CxHWdK[sS][pPCT] for a depthwise layer, e.g. 64x56d7p70
//
// Every conv layer runs as CSR and as BSR4x1, a depthwise one as per-channel live taps
// (st_dwconv2d_csr, which runs mostly-live channels dense); 1 thread, batch 1, bias + ReLU, A and
// B alternating call by call (41 rounds, order flipped every round), so machine-wide drift hits
// both alike; prints median microseconds, A/B (> 1: B is faster) and the largest output difference.
// Env: UNALIGNED=1 offsets x by 16 bytes (what a numpy or ORT graph input can be);
//      FLUSH=1 touches FLUSH_MB (default 8) MB between calls: 8 leaves x in L3, 64 sends it to
//      DRAM, as ONNX Runtime and torch interleaved by benchmarks/kernels.py do;
//      PRODUCE=1 rewrites x before every call (after any FLUSH), as the layer before it in a
//      network would have just done;
//      ISA=avx2|scalar|... forces that kernel variant in both builds (st_set_isa);
//      PLAN=1 runs a build that has st_conv2d_plan_* through a plan made once per layer (what
//      ONNX Runtime and the Python layers do); a build without it keeps the per-call API.
// Driven by benchmarks/kernel_ab.sh, which builds the two .so files from git revisions.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "st_kernels.h"

namespace {
using ConvFn = int (*)(const st_conv2d_shape*, const float*, const int32_t*, int64_t, const int32_t*, int64_t,
                       const float*, int64_t, const float*, const float*, float*);
using ThreadsFn = int (*)(int32_t);
using PlanCreateFn = int (*)(int32_t, const st_conv2d_shape*, const int32_t*, int64_t, const int32_t*, int64_t,
                             const float*, int64_t, st_conv2d_plan**);
using PlanRunFn = int (*)(const st_conv2d_plan*, int32_t, const float*, const float*, const float*, float*);
using PlanFreeFn = void (*)(st_conv2d_plan*);

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Layer {
  int cin, hw, k, stride = 1, cout;
  float sparsity = 0.9f;
  bool dw = false;
};

std::vector<Layer> parse(const char* spec) {
  std::vector<Layer> out;
  const char* p = spec;
  while (*p) {
    Layer l{};
    char* e = nullptr;
    l.cin = static_cast<int>(std::strtol(p, &e, 10));
    p = e + 1;  // 'x'
    l.hw = static_cast<int>(std::strtol(p, &e, 10));
    if (*e != 'k' && *e != 'd') {
      std::fprintf(stderr, "bad layer spec near '%s': expected k (conv) or d (depthwise)\n", e);
      std::exit(2);
    }
    l.dw = *e == 'd';
    p = e + 1;
    l.k = static_cast<int>(std::strtol(p, &e, 10));
    p = e;
    l.cout = l.cin;
    if (*p == 's') l.stride = static_cast<int>(std::strtol(p + 1, const_cast<char**>(&p), 10));
    if (*p == 'o') l.cout = static_cast<int>(std::strtol(p + 1, const_cast<char**>(&p), 10));
    if (*p == 'p') l.sparsity = std::strtol(p + 1, const_cast<char**>(&p), 10) / 100.f;
    if (*p == ',') ++p;
    if (l.cin < 1 || l.hw < 1 || l.k < 1 || l.cout < 1) {
      std::fprintf(stderr, "bad layer spec near '%s'\n", p);
      std::exit(2);
    }
    out.push_back(l);
  }
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s A.so B.so [SPEC]\n", argv[0]);
    return 2;
  }
  ConvFn fns[2][3];
  PlanCreateFn pcreate[2] = {nullptr, nullptr};
  PlanRunFn prun[2] = {nullptr, nullptr};
  PlanFreeFn pfree[2] = {nullptr, nullptr};
  const bool use_plans = std::getenv("PLAN") != nullptr;
  for (int i = 0; i < 2; ++i) {
    void* h = dlopen(argv[1 + i], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      std::fprintf(stderr, "%s\n", dlerror());
      return 1;
    }
    fns[i][0] = reinterpret_cast<ConvFn>(dlsym(h, "st_conv2d_csr"));
    fns[i][1] = reinterpret_cast<ConvFn>(dlsym(h, "st_conv2d_bsr4x1"));
    fns[i][2] = reinterpret_cast<ConvFn>(dlsym(h, "st_dwconv2d_csr"));
    if (use_plans) {
      pcreate[i] = reinterpret_cast<PlanCreateFn>(dlsym(h, "st_conv2d_plan_create"));
      prun[i] = reinterpret_cast<PlanRunFn>(dlsym(h, "st_conv2d_plan_run"));
      pfree[i] = reinterpret_cast<PlanFreeFn>(dlsym(h, "st_conv2d_plan_free"));
      std::printf("%s: %s\n", argv[1 + i], pcreate[i] ? "plan per layer" : "per-call API (no plans in this build)");
    }
    reinterpret_cast<ThreadsFn>(dlsym(h, "st_set_num_threads"))(1);
    if (const char* isa = std::getenv("ISA")) {
      using IsaFn = int (*)(const char*);
      if (reinterpret_cast<IsaFn>(dlsym(h, "st_set_isa"))(isa) != 0) {
        std::fprintf(stderr, "%s: st_set_isa(\"%s\") failed\n", argv[1 + i], isa);
        return 2;
      }
    }
  }
  const bool flush = std::getenv("FLUSH") != nullptr;
  const bool produce = std::getenv("PRODUCE") != nullptr;
  const int shift = std::getenv("UNALIGNED") ? 4 : 0;
  const char* mb = std::getenv("FLUSH_MB");
  std::vector<char> junk(static_cast<size_t>(mb ? std::atoi(mb) : 8) << 20);
  const char* spec = argc > 3 ? argv[3] : "64x56k3,256x28k3,256x14k3,64x56k1,256x28k1,256x14k1,512x7k1,128x28k3s2";
  std::mt19937 g(1);
  std::uniform_real_distribution<float> U(0, 1);
  std::normal_distribution<float> N;
  for (const Layer& l : parse(spec)) {
    for (int bsr = 0; bsr < (l.dw ? 1 : 2); ++bsr) {
      const int kind = l.dw ? 2 : bsr;  // index into fns
      const int kk = l.k * l.k, pad = (l.k - 1) / 2, oh = (l.hw + 2 * pad - l.k) / l.stride + 1;
      const int cols = l.dw ? kk : l.cin * kk;
      const int rows = bsr ? (l.cout + 3) / 4 : l.cout, per = bsr ? 4 : 1;
      std::vector<int32_t> ip{0}, ix;
      std::vector<float> v, b(l.cout);
      for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < cols; ++c)
          if (U(g) >= l.sparsity) {
            ix.push_back(c);
            for (int q = 0; q < per; ++q) v.push_back(N(g));
          }
        ip.push_back(static_cast<int32_t>(ix.size()));
      }
      for (float& f : b) f = N(g);
      const size_t xn = static_cast<size_t>(l.cin) * l.hw * l.hw, on = static_cast<size_t>(l.cout) * oh * oh;
      std::vector<float> xbuf(xn + 32), o0(on + 16), o1(on + 16);
      float* xa = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(xbuf.data()) + 63) & ~uintptr_t(63)) + shift;
      for (size_t i = 0; i < xn; ++i) xa[i] = N(g);
      const std::vector<float> xsrc(xa, xa + xn);
      // Both outputs 64-byte aligned (as ONNX Runtime's and numpy's aligned buffers are): with
      // malloc's 16-byte alignment the two builds stored to differently aligned rows, which
      // showed up as a +-9 % bias by position on some layers.
      const auto align64 = [](float* p) {
        return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63));
      };
      float* outs[2] = {align64(o0.data()), align64(o1.data())};
      st_conv2d_shape s{1, l.cin, l.hw, l.hw, l.cout, l.k, l.k, l.stride, pad, 1};
      std::vector<double> t[2];
      st_conv2d_plan* plans[2] = {nullptr, nullptr};
      for (int i = 0; i < 2; ++i)
        if (pcreate[i] && !l.dw &&
            pcreate[i](bsr ? 4 : 1, &s, ip.data(), static_cast<int64_t>(ip.size()), ix.data(),
                       static_cast<int64_t>(ix.size()), v.data(), static_cast<int64_t>(v.size()), &plans[i])) {
          std::fprintf(stderr, "%s: plan failed\n", argv[1 + i]);
          return 1;
        }
      for (int rep = 0; rep < 41; ++rep)
        for (int j = 0; j < 2; ++j) {
          const int i = rep % 2 ? 1 - j : j;
          if (flush)
            for (size_t z = 0; z < junk.size(); z += 64) junk[z]++;
          if (produce) std::memcpy(xa, xsrc.data(), sizeof(float) * xn);
          const double t0 = now();
          const int rc = plans[i] ? prun[i](plans[i], 1, xa, b.data(), nullptr, outs[i])
                                  : fns[i][kind](&s, xa, ip.data(), static_cast<int64_t>(ip.size()), ix.data(),
                                                static_cast<int64_t>(ix.size()), v.data(),
                                                static_cast<int64_t>(v.size()), b.data(), nullptr, outs[i]);
          t[i].push_back(now() - t0);
          if (rc) {
            std::fprintf(stderr, "%s failed with %d\n", argv[1 + i], rc);
            return 1;
          }
        }
      for (int i = 0; i < 2; ++i)
        if (plans[i]) pfree[i](plans[i]);
      double diff = 0;
      for (size_t z = 0; z < on; ++z) diff = std::max(diff, static_cast<double>(std::fabs(outs[0][z] - outs[1][z])));
      for (auto& tt : t) std::sort(tt.begin(), tt.end());
      const double a = t[0][t[0].size() / 2], bb = t[1][t[1].size() / 2];
      std::printf("%-4s %4d->%-4d %3d^2 %c%d s%d %3.0f%%  A %9.1f us  B %9.1f us  A/B %.3f  maxdiff %.1e\n",
                  l.dw ? "dw" : bsr ? "bsr" : "csr", l.cin, l.cout, l.hw, l.dw ? 'd' : 'k', l.k, l.stride,
                  100 * l.sparsity, a * 1e6, bb * 1e6, a / bb, diff);
    }
  }
  return 0;
}
