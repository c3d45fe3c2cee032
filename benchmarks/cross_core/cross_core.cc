// How much slower a small layer runs when its input was just written by the other CPU than by
// its own: what a layer on one thread pays after a layer split over two (the multi-thread runs'
// small layers scale below 1x on the 2-vCPU VM; docs/performance.md).
//
//   LIB=$(python -c 'import st_deploy.runtime.libpath as l; print(l.find_library("libst_kernels.so").parent)')
//   g++ -O2 -std=c++17 -I kernels/include benchmarks/cross_core/cross_core.cc -o /tmp/cross_core -L $LIB -lst_kernels -Wl,-rpath,$LIB -lpthread
//   /tmp/cross_core CIN COUT HW DENSITY [CPU_A CPU_B]     e.g. 144 36 28 0.1
//
// A 1x1 CSR layer on one thread pinned to CPU_A (default 0); before each call its input is
// rewritten either on CPU_A or by a thread pinned to CPU_B (default 1), alternating; medians of
// 2000 calls each. Run it with the machine otherwise idle.
#include <pthread.h>
#include <sched.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>
#include <algorithm>
#include "st_kernels.h"

static void pin(int cpu) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); pthread_setaffinity_np(pthread_self(), sizeof s, &s); }

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s CIN COUT HW DENSITY [CPU_A CPU_B]\n", argv[0]);
    return 2;
  }
  const int cin = atoi(argv[1]), cout = atoi(argv[2]), hw = atoi(argv[3]);
  const double density = atof(argv[4]);
  const int cpu_a = argc > 5 ? atoi(argv[5]) : 0, cpu_b = argc > 6 ? atoi(argv[6]) : 1;
  st_set_num_threads(1);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<int32_t> ip{0}, ix; std::vector<float> v;
  for (int r = 0; r < cout; ++r) { for (int c = 0; c < cin; ++c) if (u(rng) < density) { ix.push_back(c); v.push_back(u(rng)); } ip.push_back(ix.size()); }
  st_conv2d_shape s{}; s.n = 1; s.cin = cin; s.h = hw; s.w = hw; s.cout = cout; s.kh = 1; s.kw = 1; s.stride = 1; s.pad = 0; s.act = 0;
  st_conv2d_plan* plan = nullptr;
  if (st_conv2d_plan_create(1, &s, ip.data(), ip.size(), ix.data(), ix.size(), v.data(), v.size(), &plan)) { std::printf("%s\n", st_last_error()); return 1; }
  float* x = (float*)aligned_alloc(64, sizeof(float) * cin * hw * hw);
  float* y = (float*)aligned_alloc(64, sizeof(float) * cout * hw * hw);
  std::atomic<int> req{0}, done{0};
  const int iters = 4000;
  const auto write_input = [&](int round) {
    for (int j = 0; j < cin * hw * hw; ++j) x[j] = j * 1e-3f + round;
  };
  // The other CPU's writer: rewrites x when asked (req), then says so (done).
  std::thread w([&] {
    pin(cpu_b);
    for (int seen = 0;;) {
      int r;
      while ((r = req.load()) == seen) {
      }
      if (r < 0) return;
      seen = r;
      write_input(r);
      done.store(r);
    }
  });
  pin(cpu_a);
  std::vector<double> other, same;
  for (int i = 0; i < iters; ++i) {
    bool remote = i % 2 == 0;
    if (remote) {
      req.store(i + 1);
      while (done.load() != i + 1) {
      }
    } else {
      write_input(i + 1);
    }
    auto t0 = std::chrono::steady_clock::now();
    st_conv2d_plan_run(plan, 1, x, nullptr, nullptr, y);
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    (remote ? other : same).push_back(us);
  }
  req.store(-1);
  w.join();
  std::sort(other.begin(), other.end()); std::sort(same.begin(), same.end());
  printf("cin %d cout %d %dx%d density %.2f: input %.0f KB, same core %.2f us, written by other core %.2f us (%.2fx)\n", cin, cout, hw, hw, density,
         cin * hw * hw * 4 / 1024.0, same[same.size() / 2], other[other.size() / 2], other[other.size() / 2] / same[same.size() / 2]);
}
