// Driver for regular (groups = 1) sparse convolution, CSR and BSR4x1: checks everything,
// lowers the conv to wide SpMM (core/layout.h), cuts it into tasks and calls the ISA kernel.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
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

enum class Conv1x1Path { kNone, kGather, kDirect };

constexpr const char* kPathNames[] = {"auto", "gather", "direct"};

Conv1x1Path parse_path(const char* e, bool* ok) {
  *ok = true;
  if (e && std::strcmp(e, "gather") == 0) return Conv1x1Path::kGather;
  if (e && std::strcmp(e, "direct") == 0) return Conv1x1Path::kDirect;
  *ok = e && std::strcmp(e, "auto") == 0;
  return Conv1x1Path::kNone;
}

// The forced path (kNone = auto); $ST_KERNELS_CONV1X1 gives the initial value, and a value that
// is none of the names makes every conv call fail (kBadEnv) rather than silently run auto.
constexpr int kBadEnv = -1;
std::atomic<int>& forced_path() {
  static std::atomic<int> forced{[] {
    const char* env = std::getenv("ST_KERNELS_CONV1X1");
    bool ok = false;
    const int p = static_cast<int>(parse_path(env, &ok));
    return env && !ok ? kBadEnv : p;
  }()};
  return forced;
}

// Gathering copies cin x 64 floats per tile, which pays when each copied vector feeds enough
// rows: CSR with >= 20 nonzeros per input channel. Planes under two tiles (7x7: 49 positions) gather
// always, since in place they run as single-vector passes. Measured with
// `benchmarks/kernels.py --ops 1x1` under both forced paths (64-1024 channels, 7^2-56^2,
// 70-95 % sparse); BSR4x1 reads each vector for 4 rows and measured faster in place at >= 14^2.
// Unaligned x is packed whole by the direct path: one streaming copy, which measured up to 2x
// faster than gathering the same floats tile by tile for sparse layers (98 %, 144 -> 36 at 28^2:
// the copy is most of the time).
Conv1x1Path conv1x1_path(int32_t block, int32_t cin, int64_t hw, int64_t nnz) {
  if (const int f = forced_path().load(); f > 0) return static_cast<Conv1x1Path>(f);
  if (hw < 2 * kGatherTile) return Conv1x1Path::kGather;
  if (block == 1 && nnz >= 20 * static_cast<int64_t>(cin)) return Conv1x1Path::kGather;
  return Conv1x1Path::kDirect;
}

int conv2d_sparse(int32_t block, const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                  int64_t indptr_len, const int32_t* indices, int64_t nnz, const float* values,
                  int64_t values_len, const float* bias, const float* residual, float* out) {
  clear_error();
  const char* what = block == 1 ? "conv2d_csr" : "conv2d_bsr4x1";
  int32_t OH = 0, OW = 0;
  if (int rc = check_conv_shape(what, s, x, out, &OH, &OW)) return rc;
  const IsaTable* tbl = active_table();
  if (!tbl) return ST_EUNSUPPORTED;
  const int64_t cols = static_cast<int64_t>(s->cin) * s->kh * s->kw;
  if (int rc = validate_sparse(what, s->cout, cols, block, indptr, indptr_len, indices, nnz, values,
                               values_len))
    return rc;

  if (forced_path().load() == kBadEnv)
    return Fail(ST_EINVAL) << what << ": ST_KERNELS_CONV1X1=" << std::getenv("ST_KERNELS_CONV1X1")
                           << " is not one of auto, gather, direct";
  const PhaseLayout L = make_layout(s->h, s->w, s->kh, s->kw, s->stride, s->pad);
  const int64_t hw = static_cast<int64_t>(s->h) * s->w;
  const int32_t kk = s->kh * s->kw;
  // 1x1/stride 1 needs no padded layout. Gathered tiles (core/gather.h) read x in place whatever
  // its alignment; direct reads x in place when every channel plane starts on a cache line
  // (otherwise nearly every vector load straddles two lines, 1.3-1.7x slower) and else packs a
  // copy.
  const bool aligned = reinterpret_cast<uintptr_t>(x) % 64 == 0 && hw % 16 == 0;
  const Conv1x1Path path = L.identity() ? conv1x1_path(block, s->cin, hw, nnz) : Conv1x1Path::kNone;
  const bool gather = path == Conv1x1Path::kGather;
  const bool ident = gather || (path == Conv1x1Path::kDirect && aligned);
  const bool packed = L.identity() && !ident;
  const int64_t chan_pitch = gather ? kGatherTile : ident ? hw : packed ? (hw + 15) / 16 * 16 : L.chan_pitch;
  const int64_t total = chan_pitch * s->cin + (ident ? 0 : layout_slack(L));
  if (total > INT32_MAX)
    return Fail(ST_EUNSUPPORTED) << what << ": input of " << total
                                 << " floats per image exceeds the 32-bit offsets of the kernels";

  int32_t* off = static_cast<int32_t*>(scratch(kSlotOffsets, sizeof(int32_t) * std::max<int64_t>(nnz, 1)));
  float* buf = ident ? nullptr : static_cast<float*>(scratch(kSlotLayout, sizeof(float) * total));
  // Column (channel, tap) -> input offset: a table lookup per nonzero instead of a division.
  int32_t* col_off = static_cast<int32_t*>(scratch(kSlotColumns, sizeof(int32_t) * cols));
  if (!off || !col_off || (!ident && !buf)) return Fail(ST_ENOMEM) << what << ": out of memory for scratch";
  for (int32_t ci = 0; ci < s->cin; ++ci)
    for (int32_t t = 0; t < kk; ++t)
      col_off[ci * kk + t] = static_cast<int32_t>(ci * chan_pitch + (L.identity() ? 0 : L.tap_offset(t / s->kw, t % s->kw)));
  for (int64_t j = 0; j < nnz; ++j) off[j] = col_off[indices[j]];
  if (!ident) std::memset(buf + chan_pitch * s->cin, 0, sizeof(float) * layout_slack(L));

  ConvJob job{};
  job.rowptr = indptr;
  job.off = off;
  job.val = values;
  job.cout = s->cout;
  job.Wq = ident ? OW : L.Wq;
  job.Q = OH * job.Wq;
  job.OW = OW;
  job.OHW = OH * OW;
  job.bias = bias;
  job.act = s->act;
  job.gather = gather;
  job.cin = s->cin;
  job.xpitch = hw;
  int32_t failed = 0;
  job.failed = &failed;
  ConvKernel kern = block == 1 ? tbl->conv2d_csr : tbl->conv2d_bsr4x1;

  // Tasks: wide-position chunks x row chunks (rows balanced by nonzeros).
  const int32_t brows = static_cast<int32_t>(indptr_len - 1);
  const int nt = num_threads();
  const double flops = 2.0 * static_cast<double>(nnz) * block * job.Q;
  std::vector<int32_t> qs{0, job.Q}, rs{0, brows};
  if (nt > 1 && flops >= kMinParallelFlops) {
    const int want = 4 * nt;
    qs = split_quantum(job.Q, want);
    const int qparts = static_cast<int>(qs.size()) - 1;
    rs = split_rows_by_nnz(indptr, brows, (want + qparts - 1) / qparts);
  }
  const int nq = static_cast<int>(qs.size()) - 1, nr = static_cast<int>(rs.size()) - 1;
  const int fill_tasks = std::min<int>(s->cin, nt > 1 && flops >= kMinParallelFlops ? 2 * nt : 1);

  const int64_t in_img = static_cast<int64_t>(s->cin) * s->h * s->w;
  const int64_t out_img = static_cast<int64_t>(s->cout) * OH * OW;
  for (int32_t n = 0; n < s->n; ++n) {
    const float* xn = x + n * in_img;
    if (ident) {
      job.X = xn;
    } else {
      parallel_for(fill_tasks, [&](int t) {
        const int32_t c0 = static_cast<int32_t>(static_cast<int64_t>(s->cin) * t / fill_tasks);
        const int32_t c1 = static_cast<int32_t>(static_cast<int64_t>(s->cin) * (t + 1) / fill_tasks);
        for (int32_t c = c0; c < c1; ++c) {
          const float* src = xn + static_cast<int64_t>(c) * hw;
          if (packed) {
            std::memcpy(buf + c * chan_pitch, src, sizeof(float) * hw);
            std::memset(buf + c * chan_pitch + hw, 0, sizeof(float) * (chan_pitch - hw));
          } else {
            fill_channel(L, src, buf + c * chan_pitch);
          }
        }
      });
      job.X = buf;
    }
    job.res = residual ? residual + n * out_img : nullptr;
    job.out = out + n * out_img;
    parallel_for(nq * nr, [&](int t) {
      const int qi = t % nq, ri = t / nq;
      kern(job, rs[ri], rs[ri + 1], qs[qi], qs[qi + 1]);
    });
    if (failed) return Fail(ST_ENOMEM) << what << ": out of memory for a thread's tile buffer";
  }
  return ST_OK;
}
}  // namespace
}  // namespace st

extern "C" {
int st_set_conv1x1_path(const char* path) {
  st::clear_error();
  bool ok = false;
  const st::Conv1x1Path p = st::parse_path(path, &ok);
  if (!ok)
    return st::Fail(ST_EINVAL) << "conv1x1 path must be \"auto\", \"gather\" or \"direct\", got \""
                               << (path ? path : "(null)") << "\"";
  st::forced_path().store(static_cast<int>(p));
  return ST_OK;
}
const char* st_conv1x1_path(void) {
  const int p = st::forced_path().load();
  return p == st::kBadEnv ? "invalid" : st::kPathNames[p];
}
int st_conv2d_csr(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                  int64_t indptr_len, const int32_t* indices, int64_t nnz, const float* values,
                  int64_t values_len, const float* bias, const float* residual, float* out) {
  return st::conv2d_sparse(1, s, x, indptr, indptr_len, indices, nnz, values, values_len, bias,
                           residual, out);
}
int st_conv2d_bsr4x1(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                     int64_t indptr_len, const int32_t* indices, int64_t nnzb, const float* values,
                     int64_t values_len, const float* bias, const float* residual, float* out) {
  return st::conv2d_sparse(4, s, x, indptr, indptr_len, indices, nnzb, values, values_len, bias,
                           residual, out);
}
}
