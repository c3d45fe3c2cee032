// How an op is cut into tasks for the thread pool.
#pragma once
#include <cstdint>
#include <vector>

namespace st {
// Below this many flops a second thread costs more than it saves (measured ~20 us break-even).
constexpr double kMinParallelFlops = 2.5e5;
// Task boundaries in wide positions are multiples of this, a multiple of every ISA's tile width.
constexpr int32_t kQuantum = 64;

// Splits rows [0, rows) into `parts` ranges of about equal nonzero count.
std::vector<int32_t> split_rows_by_nnz(const int32_t* rowptr, int32_t rows, int parts);
// Splits [0, n) into `parts` ranges whose inner boundaries are multiples of kQuantum.
std::vector<int32_t> split_quantum(int32_t n, int parts);
}  // namespace st
