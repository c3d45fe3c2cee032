#pragma once
#include <cstdint>
#include <functional>

namespace st {
// The caller thread takes tasks too. Idle workers poll for the next job for spin_us()
// microseconds, then sleep on a condition variable, so a process between requests costs
// nothing while a network's back-to-back layers never wait for a wake-up.
// Re-entrant or concurrent calls run serially on the calling thread instead of blocking.
constexpr int kDefaultSpinUs = 200;
void parallel_for(int ntasks, const std::function<void(int)>& fn);
int num_threads();
void set_num_threads(int n);
int default_num_threads();
// Polling time of idle workers; 0 makes a purely sleeping pool (for oversubscribed machines).
// The initial value comes from $ST_KERNELS_SPIN_US.
int spin_us();
void set_spin_us(int us);
// A host runtime's pool that runs parallel_for's tasks instead of ours (st_set_parallel_launcher).
using Launcher = int (*)(int32_t ntasks, void (*fn)(int32_t task, void* arg), void* arg);
void set_launcher(Launcher launch);
}  // namespace st
