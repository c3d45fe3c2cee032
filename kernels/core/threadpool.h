#pragma once
#include <functional>

namespace st {
// Sleeping (condition-variable) pool: idle workers cost nothing, so it can sit inside
// ONNX Runtime or TVM without fighting their own pools. The caller thread takes tasks too.
// Re-entrant or concurrent calls run serially on the calling thread instead of blocking.
void parallel_for(int ntasks, const std::function<void(int)>& fn);
int num_threads();
void set_num_threads(int n);
int default_num_threads();
}  // namespace st
