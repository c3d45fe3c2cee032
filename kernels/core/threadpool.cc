#include "threadpool.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace st {
namespace {

struct Job {
  const std::function<void(int)>* fn;
  int n;
  std::atomic<int> next{0};
};

class Pool {
 public:
  explicit Pool(int nthreads) : nthreads_(nthreads) {
    for (int i = 1; i < nthreads; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
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
    Job job;
    job.fn = &fn;
    job.n = ntasks;
    {
      std::lock_guard<std::mutex> l(m_);
      job_ = &job;
      ++gen_;
    }
    wake_.notify_all();
    work(job);
    std::unique_lock<std::mutex> l(m_);
    // Workers that joined this job must leave it before `job` goes out of scope.
    job_ = nullptr;
    done_.wait(l, [&] { return active_ == 0; });
  }

 private:
  static void work(Job& j) {
    for (int t = j.next.fetch_add(1); t < j.n; t = j.next.fetch_add(1)) (*j.fn)(t);
  }
  void loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> l(m_);
    for (;;) {
      wake_.wait(l, [&] { return stop_ || (job_ != nullptr && gen_ != seen); });
      if (stop_) return;
      seen = gen_;
      Job* j = job_;
      ++active_;
      l.unlock();
      work(*j);
      l.lock();
      if (--active_ == 0) done_.notify_all();
    }
  }

  int nthreads_;
  std::vector<std::thread> workers_;
  std::mutex run_m_;
  std::mutex m_;
  std::condition_variable wake_, done_;
  Job* job_ = nullptr;
  uint64_t gen_ = 0;
  int active_ = 0;
  bool stop_ = false;
};

std::mutex g_pool_m;
std::shared_ptr<Pool> g_pool;

std::shared_ptr<Pool> pool() {
  std::lock_guard<std::mutex> l(g_pool_m);
  if (!g_pool) g_pool = std::make_shared<Pool>(default_num_threads());
  return g_pool;
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
  auto fresh = std::make_shared<Pool>(std::max(1, n));
  std::shared_ptr<Pool> old;
  {
    std::lock_guard<std::mutex> l(g_pool_m);
    old = g_pool;
    g_pool = fresh;
  }
  // `old` joins its workers when the last in-flight run holding it returns.
}

void parallel_for(int ntasks, const std::function<void(int)>& fn) {
  if (ntasks <= 0) return;
  std::shared_ptr<Pool> p = pool();
  p->run(ntasks, fn);
}
}  // namespace st
