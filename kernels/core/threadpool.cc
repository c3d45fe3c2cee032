#include "threadpool.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace st {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// How long an idle worker keeps polling for the next job before it sleeps. A network is a
// chain of short layers with a few microseconds of other ops between them: a sleeping worker
// takes a futex wake-up per layer (tens of microseconds on a VM), which is as long as the
// layers themselves. Polling is bounded, so an idle process goes quiet after this long.
int spin_us_from_env() {
  if (const char* s = std::getenv("ST_KERNELS_SPIN_US")) {
    char* end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (end != s && *end == '\0' && v >= 0 && v <= 1000000) return static_cast<int>(v);
  }
  return kDefaultSpinUs;
}

class Pool {
 public:
  Pool(int nthreads, int spin_us) : nthreads_(nthreads), spin_us_(spin_us) {
    for (int i = 1; i < nthreads; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_.store(true);
      line_.ticket.fetch_add(kGenOne);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return nthreads_; }

  void run(int ntasks, const std::function<void(int)>& fn) {
    // Busy (another thread is using the pool, or we are inside a task): run here, serially.
    std::unique_lock<std::mutex> busy(run_m_, std::try_to_lock);
    if (!busy.owns_lock() || workers_.empty() || ntasks <= 1) {
      for (int t = 0; t < ntasks; ++t) fn(t);
      return;
    }
    line_.fn.store(&fn, std::memory_order_relaxed);
    line_.n.store(ntasks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    // A new generation with task counter 0, published with the job in the same cache line.
    const uint64_t gen = (line_.ticket.load(std::memory_order_relaxed) >> 32) + 1;
    line_.ticket.store(gen << 32);
    if (sleepers_.load() > 0) {
      // The lock orders this notify after a sleeper's last look at the ticket (see wait_for_job).
      std::lock_guard<std::mutex> l(m_);
      wake_.notify_all();
    }
    work(gen);
    // Every task of this generation has run once done_ reaches ntasks; a worker that comes late
    // finds the generation or the counter moved on and never touches `fn`.
    while (done_.load(std::memory_order_acquire) < ntasks) cpu_relax();
  }

 private:
  static constexpr uint64_t kGenOne = uint64_t{1} << 32;

  // Claims and runs tasks of generation `gen` until none are left. A task is claimed by a
  // compare-exchange on (generation, next task), so a stale worker cannot take a task of a
  // later job, and the job's fields are read only after a claim that proves the job alive.
  void work(uint64_t gen) {
    uint64_t w = line_.ticket.load(std::memory_order_acquire);
    for (;;) {
      if ((w >> 32) != gen) return;
      const uint32_t t = static_cast<uint32_t>(w);
      const std::function<void(int)>* fn = line_.fn.load(std::memory_order_relaxed);
      const int n = line_.n.load(std::memory_order_relaxed);
      if (static_cast<int>(t) >= n) return;
      if (!line_.ticket.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire))
        continue;
      (*fn)(static_cast<int>(t));
      done_.fetch_add(1, std::memory_order_release);
      w = line_.ticket.load(std::memory_order_acquire);
    }
  }

  // Waits for a generation other than `seen`: polls for spin_us_, then sleeps on the condition variable.
  uint64_t wait_for_job(uint64_t seen) {
    using clock = std::chrono::steady_clock;
    const auto until = clock::now() + std::chrono::microseconds(spin_us_);
    for (int i = 0; spin_us_ > 0; ++i) {
      const uint64_t g = line_.ticket.load(std::memory_order_acquire) >> 32;
      if (g != seen) return g;
      cpu_relax();
      if ((i & 255) == 255 && clock::now() >= until) break;
    }
    std::unique_lock<std::mutex> l(m_);
    sleepers_.fetch_add(1);
    // After counting ourselves asleep, look again: a run() that read sleepers_ == 0 has
    // already published its generation, and we see it here instead of missing its notify.
    wake_.wait(l, [&] { return (line_.ticket.load() >> 32) != seen; });
    sleepers_.fetch_sub(1);
    return line_.ticket.load() >> 32;
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      seen = wait_for_job(seen);
      if (stop_.load()) return;
      work(seen);
    }
  }

  int nthreads_;
  int spin_us_;
  std::vector<std::thread> workers_;
  std::mutex run_m_;
  std::mutex m_;
  std::condition_variable wake_;
  // What a worker needs to join a job, in one cache line: one transfer between cores.
  struct alignas(64) Line {
    std::atomic<uint64_t> ticket{0};  // generation << 32 | next task
    // Written before the ticket's generation is published; read only to try a claim.
    std::atomic<const std::function<void(int)>*> fn{nullptr};
    std::atomic<int> n{0};
  } line_;
  alignas(64) std::atomic<int> done_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
};

std::mutex g_pool_m;
std::shared_ptr<Pool> g_pool;
int g_spin_us = -1;  // -1: not yet read from the environment
std::atomic<Launcher> g_launcher{nullptr};

int spin_us_locked() {
  if (g_spin_us < 0) g_spin_us = spin_us_from_env();
  return g_spin_us;
}

std::shared_ptr<Pool> pool() {
  std::lock_guard<std::mutex> l(g_pool_m);
  if (!g_pool) g_pool = std::make_shared<Pool>(default_num_threads(), spin_us_locked());
  return g_pool;
}

void replace_pool(int n, int spin_us) {
  std::shared_ptr<Pool> old;
  {
    std::lock_guard<std::mutex> l(g_pool_m);
    g_spin_us = spin_us;
    auto fresh = std::make_shared<Pool>(std::max(1, n), spin_us);
    old = g_pool;
    g_pool = fresh;
  }
  // `old` joins its workers when the last in-flight run holding it returns.
}
}  // namespace

int default_num_threads() {
  // The affinity mask, not hardware_concurrency(): containers and taskset limit the CPUs we get.
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

int num_threads() { return pool()->size(); }

void set_num_threads(int n) {
  int spin;
  {
    std::lock_guard<std::mutex> l(g_pool_m);
    spin = spin_us_locked();
  }
  replace_pool(n, spin);
}

int spin_us() {
  std::lock_guard<std::mutex> l(g_pool_m);
  return spin_us_locked();
}

void set_spin_us(int us) { replace_pool(num_threads(), std::max(0, us)); }

void set_launcher(Launcher launch) { g_launcher.store(launch); }

void parallel_for(int ntasks, const std::function<void(int)>& fn) {
  if (ntasks <= 0) return;
  if (Launcher launch = g_launcher.load(std::memory_order_acquire); launch != nullptr && ntasks > 1) {
    // Tasks are claimed from a counter, so whatever the host's pool leaves (fewer threads than
    // tasks, a failed launch) runs here afterwards instead of being lost.
    struct Claim {
      const std::function<void(int)>* fn;
      int n;
      std::atomic<int> next{0};
      void drain() {
        for (int t = next.fetch_add(1); t < n; t = next.fetch_add(1)) (*fn)(t);
      }
    } claim;
    claim.fn = &fn;
    claim.n = ntasks;
    if (launch(ntasks, [](int32_t, void* arg) { static_cast<Claim*>(arg)->drain(); }, &claim) >= 0) {
      claim.drain();
      return;
    }
    // Declined (no host pool on this thread, e.g. outside the host's compute call): ours runs it.
  }
  std::shared_ptr<Pool> p = pool();
  p->run(ntasks, fn);
}
}  // namespace st
