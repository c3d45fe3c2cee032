#include "partition.h"

#include <algorithm>

namespace st {

std::vector<int32_t> split_rows_by_nnz(const int32_t* rowptr, int32_t rows, int parts) {
  parts = std::max(1, std::min(parts, rows));
  std::vector<int32_t> b(parts + 1);
  const int64_t nnz = rowptr[rows];
  b[0] = 0;
  for (int i = 1; i < parts; ++i) {
    const int64_t target = nnz * i / parts;
    int32_t r = static_cast<int32_t>(std::lower_bound(rowptr, rowptr + rows + 1, target) - rowptr);
    // Keep at least one row per part even when nonzeros are concentrated in few rows.
    r = std::max(r, b[i - 1] + 1);
    r = std::min(r, rows - (parts - i));
    b[i] = r;
  }
  b[parts] = rows;
  return b;
}

std::vector<int32_t> split_quantum(int32_t n, int parts) {
  const int32_t units = (n + kQuantum - 1) / kQuantum;
  parts = std::max(1, std::min(parts, units));
  std::vector<int32_t> b(parts + 1);
  for (int i = 0; i <= parts; ++i)
    b[i] = std::min<int32_t>(n, static_cast<int32_t>(static_cast<int64_t>(units) * i / parts) * kQuantum);
  b[parts] = n;
  return b;
}
}  // namespace st
