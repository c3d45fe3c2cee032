#include <vector>

#include "../include/st_kernels.h"
#include "errors.h"
#include "partition.h"
#include "threadpool.h"
#include "validate.h"
#include "variants.h"

extern "C" int st_linear_csr(int32_t n, int32_t in_features, int32_t out_features, const float* x,
                             const int32_t* indptr, int64_t indptr_len, const int32_t* indices,
                             int64_t nnz, const float* values, int64_t values_len,
                             const float* bias, int32_t act, float* out) {
  using namespace st;
  clear_error();
  if (n < 1 || in_features < 1 || out_features < 1)
    return Fail(ST_EINVAL) << "linear_csr: sizes must be >= 1 (n=" << n << " in=" << in_features
                           << " out=" << out_features << ")";
  if (act != ST_ACT_NONE && act != ST_ACT_RELU && act != ST_ACT_RELU6)
    return Fail(ST_EINVAL) << "linear_csr: act code " << act << " (0 none, 1 relu, 2 relu6)";
  if (!x || !out) return Fail(ST_EINVAL) << "linear_csr: input or output pointer is null";
  const IsaTable* tbl = active_table();
  if (!tbl) return ST_EUNSUPPORTED;
  if (int rc = validate_sparse("linear_csr", out_features, in_features, 1, indptr, indptr_len,
                               indices, nnz, values, values_len))
    return rc;
  LinearJob job{x, n, in_features, out_features, indptr, indices, values, bias, out, act};
  const int nt = num_threads();
  std::vector<int32_t> rs{0, out_features};
  if (nt > 1 && 2.0 * nnz * n >= kMinParallelFlops) rs = split_rows_by_nnz(indptr, out_features, 4 * nt);
  const int ntasks = static_cast<int>(rs.size()) - 1;
  parallel_for(ntasks, [&](int t) { tbl->linear_csr(job, rs[t], rs[t + 1]); });
  return ST_OK;
}
