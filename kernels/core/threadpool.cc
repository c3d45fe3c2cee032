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

struct Job {
  const std::function<void(int)>* fn;
  int n;
  std::atomic<int> next{0};
  std::atomic<int> done{0};
};

class Pool {
 public:
  Pool(int nthreads, int spin_us) : nthreads_(nthreads), spin_us_(spin_us) {
    for (int i = 1; i < nthreads; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_.store(true);
      gen_.fetch_add(1);
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
    // Each job has its own task counter, kept alive by whoever holds it: a worker that comes late
    // to a job finds its counter spent and never takes a task of another job.
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->n = ntasks;
    std::atomic_store(&job_, job);
    gen_.fetch_add(1);
    if (sleepers_.load() > 0) {
      // The lock orders this notify after a sleeper's last look at gen_ (see wait_for_job).
      std::lock_guard<std::mutex> l(m_);
      wake_.notify_all();
    }
    work(*job);
    while (job->done.load(std::memory_order_acquire) < ntasks) cpu_relax();
    std::atomic_store(&job_, std::shared_ptr<Job>());
  }

 private:
  static void work(Job& j) {
    for (int t = j.next.fetch_add(1, std::memory_order_relaxed); t < j.n;
         t = j.next.fetch_add(1, std::memory_order_relaxed)) {
      (*j.fn)(t);
      j.done.fetch_add(1, std::memory_order_release);
    }
  }

  // Waits for a generation other than `seen`: polls for spin_us_, then sleeps on the condition variable.
  uint64_t wait_for_job(uint64_t seen) {
    using clock = std::chrono::steady_clock;
    const auto until = clock::now() + std::chrono::microseconds(spin_us_);
    for (int i = 0; spin_us_ > 0; ++i) {
      const uint64_t g = gen_.load(std::memory_order_acquire);
      if (g != seen) return g;
      cpu_relax();
      if ((i & 255) == 255 && clock::now() >= until) break;
    }
    std::unique_lock<std::mutex> l(m_);
    sleepers_.fetch_add(1);
    // After counting ourselves asleep, look again: a run() that read sleepers_ == 0 has
    // already advanced gen_, and we see it here instead of missing its notify.
    wake_.wait(l, [&] { return gen_.load() != seen; });
    sleepers_.fetch_sub(1);
    return gen_.load();
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      seen = wait_for_job(seen);
      if (stop_.load()) return;
      if (std::shared_ptr<Job> j = std::atomic_load(&job_)) work(*j);
    }
  }

  int nthreads_;
  int spin_us_;
  std::vector<std::thread> workers_;
  std::mutex run_m_;
  std::mutex m_;
  std::condition_variable wake_;
  std::shared_ptr<Job> job_;  // read and written with std::atomic_load / atomic_store
  alignas(64) std::atomic<uint64_t> gen_{0};
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
