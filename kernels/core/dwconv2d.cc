// Driver for depthwise convolution (groups = C): dense weights become a full tap list, sparse
// ones come as a per-channel CSR of live taps; both run the same per-channel ISA kernel.
#include <algorithm>
#include <climits>
#include <vector>

#include "../include/st_kernels.h"
#include "conv_shape.h"
#include "errors.h"
#include "layout.h"
#include "partition.h"
#include "scratch.h"
#include "threadpool.h"
#include "validate.h"
#include "variants.h"

namespace st {
namespace {

int dwconv2d(const char* what, const st_conv2d_shape* s, const float* x, const int32_t* indptr,
             int64_t indptr_len, const int32_t* taps, int64_t nnz, const float* values,
             int64_t values_len, const float* bias, const float* residual, float* out,
             const float* wdense = nullptr) {
  int32_t OH = 0, OW = 0;
  if (int rc = check_conv_shape(what, s, x, out, &OH, &OW)) return rc;
  if (s->cin != s->cout)
    return Fail(ST_EINVAL) << what << ": depthwise needs cin == cout, got " << s->cin << " and " << s->cout;
  if (s->kh != s->kw) return Fail(ST_EINVAL) << what << ": depthwise kernel must be square";
  if (s->kh > 15) return Fail(ST_EINVAL) << what << ": depthwise kernel above 15x15";
  const IsaTable* tbl = active_table();
  if (!tbl) return ST_EUNSUPPORTED;
  const int32_t k = s->kh, C = s->cin;
  if (!wdense)
    if (int rc = validate_sparse(what, C, k * k, 1, indptr, indptr_len, taps, nnz, values, values_len))
      return rc;

  const PhaseLayout L = make_layout(s->h, s->w, k, k, s->stride, s->pad);
  if (L.chan_pitch + layout_slack(L) > INT32_MAX / 2)
    return Fail(ST_EUNSUPPORTED) << what << ": channel plane too large";
  int32_t tap_off[15 * 15];
  for (int32_t t = 0; t < k * k; ++t) tap_off[t] = static_cast<int32_t>(L.tap_offset(t / k, t % k));

  DwJob job{};
  job.C = C;
  job.L = &L;
  job.rowptr = indptr;
  job.tap = taps;
  job.val = values;
  job.tap_off = tap_off;
  job.wdense = wdense;
  job.bias = bias;
  job.act = s->act;
  int32_t failed = 0;
  job.failed = &failed;

  const int nt = num_threads();
  const double flops = 2.0 * static_cast<double>(nnz) * OH * OW;  // one image
  // Channel ranges of one image; a layer too small to split pays off across a batch's images.
  std::vector<int32_t> cs{0, C};
  if (nt > 1 && flops >= kMinParallelFlops) {
    if (wdense) {
      const int parts = std::min<int>(C, 4 * nt);
      cs.assign(parts + 1, 0);
      for (int i = 0; i <= parts; ++i) cs[i] = static_cast<int32_t>(static_cast<int64_t>(C) * i / parts);
    } else {
      cs = split_rows_by_nnz(indptr, C, 4 * nt);
    }
  }
  const int parts = static_cast<int>(cs.size()) - 1;
  const int64_t img = static_cast<int64_t>(C) * s->h * s->w, oimg = static_cast<int64_t>(C) * OH * OW;
  const DwKernel kern = wdense ? tbl->dwconv2d_dense : tbl->dwconv2d_csr;
  // One fork-join for the whole batch: task t is channel range t % parts of image t / parts.
  const auto image = [&](int32_t n) {
    DwJob j = job;
    j.x = x + n * img;
    j.res = residual ? residual + n * oimg : nullptr;
    j.out = out + n * oimg;
    return j;
  };
  if (parts > 1 || (nt > 1 && flops * s->n >= kMinParallelFlops)) {
    parallel_for(s->n * parts, [&](int t) { kern(image(t / parts), cs[t % parts], cs[t % parts + 1]); });
  } else {
    for (int32_t n = 0; n < s->n; ++n) kern(image(n), 0, C);
  }
  if (failed) return Fail(ST_ENOMEM) << what << ": out of memory for the per-thread plane buffer";
  return ST_OK;
}
}  // namespace
}  // namespace st

extern "C" {
int st_dwconv2d_csr(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                    int64_t indptr_len, const int32_t* indices, int64_t nnz, const float* values,
                    int64_t values_len, const float* bias, const float* residual, float* out) {
  st::clear_error();
  return st::dwconv2d("dwconv2d_csr", s, x, indptr, indptr_len, indices, nnz, values, values_len,
                      bias, residual, out);
}

int st_dwconv2d_dense(const st_conv2d_shape* s, const float* x, const float* weight,
                      const float* bias, const float* residual, float* out) {
  st::clear_error();
  if (!s) return st::Fail(ST_EINVAL) << "dwconv2d_dense: shape is null";
  if (!weight) return st::Fail(ST_EINVAL) << "dwconv2d_dense: weight is null";
  if (s->cin < 1 || s->kh < 1 || s->kh > 15)
    return st::Fail(ST_EINVAL) << "dwconv2d_dense: need cin >= 1 and 1 <= k <= 15";
  const int32_t C = s->cin, kk = s->kh * s->kh;
  if (st::dw_direct_supported(s->kh, s->stride) && s->kw == s->kh)
    return st::dwconv2d("dwconv2d_dense", s, x, nullptr, 0, nullptr, static_cast<int64_t>(C) * kk,
                        nullptr, 0, bias, residual, out, weight);
  // Other shapes: every tap listed, weight [C, 1, k, k] is already the CSR value array.
  const int64_t nnz = static_cast<int64_t>(C) * kk;
  auto* rowptr = static_cast<int32_t*>(st::scratch(st::kSlotTmp, sizeof(int32_t) * (C + 1 + nnz)));
  if (!rowptr) return st::Fail(ST_ENOMEM) << "dwconv2d_dense: out of memory";
  int32_t* taps = rowptr + C + 1;
  for (int32_t c = 0; c <= C; ++c) rowptr[c] = c * kk;
  for (int64_t j = 0; j < nnz; ++j) taps[j] = static_cast<int32_t>(j % kk);
  return st::dwconv2d("dwconv2d_dense", s, x, rowptr, C + 1, taps, nnz, weight, nnz, bias,
                      residual, out);
}
}
