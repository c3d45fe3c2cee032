#pragma once
#include <cstdint>

namespace st {
// Checks a CSR (block_rows = 1) or BSR block_rows x 1 pattern of a rows x cols matrix:
// indptr has ceil(rows / block_rows) + 1 entries, starts at 0, never decreases, ends at nnz;
// every index is in [0, cols); values hold nnz * block_rows floats. Sets the thread error and
// returns ST_EINVAL on the first fault. `what` names the layer argument in the message.
int validate_sparse(const char* what, int64_t rows, int64_t cols, int32_t block_rows,
                    const int32_t* indptr, int64_t indptr_len, const int32_t* indices, int64_t nnz,
                    const void* values, int64_t values_len);

// Checks of a linear call shared by every format and device: sizes >= 1, a known act code,
// non-null x and out. Sets the thread error and returns ST_EINVAL on the first fault.
int check_linear(const char* what, int32_t n, int32_t in_features, int32_t out_features,
                 const float* x, int32_t act, const float* out);
}  // namespace st
