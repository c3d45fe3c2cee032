#include <algorithm>
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
  if (int rc = check_linear("linear_csr", n, in_features, out_features, x, act, out)) return rc;
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

extern "C" int st_linear_dense(int32_t n, int32_t in_features, int32_t out_features, const float* x,
                               const float* weight, int64_t weight_len, const float* bias,
                               int32_t act, float* out) {
  using namespace st;
  clear_error();
  if (int rc = check_linear("linear_dense", n, in_features, out_features, x, act, out)) return rc;
  const int64_t want = static_cast<int64_t>(in_features) * out_features;
  if (!weight) return Fail(ST_EINVAL) << "linear_dense: weight is null";
  if (weight_len != want)
    return Fail(ST_EINVAL) << "linear_dense: weight has " << weight_len << " entries, expected "
                           << out_features << " x " << in_features << " = " << want;
  const IsaTable* tbl = active_table();
  if (!tbl) return ST_EUNSUPPORTED;
  LinearJob job{x, n, in_features, out_features, nullptr, nullptr, nullptr, bias, out, act, weight};
  // Row chunks of whole groups of 4 (the kernel's row blocking), ~4 per thread.
  const int nt = num_threads();
  const int32_t groups = (out_features + 3) / 4;
  const int ntasks = nt > 1 && 2.0 * static_cast<double>(want) * n >= kMinParallelFlops
                         ? static_cast<int>(std::min<int64_t>(groups, 4 * nt))
                         : 1;
  parallel_for(ntasks, [&](int t) {
    const auto bound = [&](int i) { return static_cast<int32_t>(static_cast<int64_t>(groups) * i / ntasks) * 4; };
    tbl->linear_dense(job, bound(t), std::min(out_features, bound(t + 1)));
  });
  return ST_OK;
}
