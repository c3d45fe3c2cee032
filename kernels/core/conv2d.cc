// Driver for regular (groups = 1) sparse convolution, CSR and BSR4x1. A plan (prepare) checks a
// layer once and lowers it for one input size to wide SpMM (core/layout.h): the layout, each
// nonzero's input offset, the kernel's order of the weights. Running it (run) fills the layout,
// cuts the work into tasks and calls the ISA kernel.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
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

// kx-split CSR (conv2d-csr.h): stride 1, 3 columns of taps, an ISA with lane shifts, rows whose
// rounding up to whole vectors adds at most 1/8 (56^2: 58 -> 64 columns; 7^2: 9 -> 16 would
// waste 44 %), and at most 128 nonzeros per row on average: each row then sweeps its input runs
// three times (once per kx), and longer rows no longer find the runs of the previous sweep in L1.
// Measured with `PLAN=1 benchmarks/kernel_ab.sh` against the plain wide layout, 90 %: 1.10-1.25x
// for 16-96 channels (28^2-112^2), 1.0-1.04x at 128, 0.86-0.92x at 256-512 channels (230-460 per
// row) and 0.96x for 64 channels at 70 % (173 per row). Returns the row alignment in floats, 0
// for the plain wide layout.
int32_t kx_split_width(int32_t block, const IsaTable* tbl, const st_conv2d_shape* s, int64_t nnz) {
  const int32_t vw = tbl->csr_kx_split;
  if (block != 1 || vw == 0 || s->stride != 1 || s->kw != 3 || nnz > 128 * static_cast<int64_t>(s->cout))
    return 0;
  const int64_t wq = static_cast<int64_t>(s->w) + 2 * s->pad;  // OW + 2 at stride 1, kw = 3
  const int64_t padded = (wq + vw - 1) / vw * vw;
  return 8 * padded <= 9 * wq ? vw : 0;
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

// Everything about a layer that does not depend on the input values: checked once, then run
// any number of times (st_conv2d_plan_*), or built and dropped per call (st_conv2d_csr/bsr4x1,
// which then borrow the caller's arrays and the thread's scratch instead of owning copies).
struct Plan {
  int32_t block;
  st_conv2d_shape s;  // s.n unused
  const char* what;
  int32_t OH, OW;
  PhaseLayout L;
  IsaTable isa;       // the table active when the plan was made (a copy: set_isa edits it)
  uint64_t config;    // config_generation() then; a plan of an older one re-plans per call
  bool gather, direct, kx_split;
  int64_t chan_pitch, total, nnz;
  int32_t brows;
  // The layer as given (owned copies in plans made by st_conv2d_plan_create).
  const int32_t* indptr;
  const int32_t* indices;
  const float* values;
  int64_t values_len;
  // Derived: per-nonzero input offsets, values in kernel order, kx segments (kx-split only).
  const int32_t* off;
  const float* val;
  const int32_t* kxseg;
  std::vector<int32_t> own_i;  // indptr, indices, off, kxseg of an owning plan
  std::vector<float> own_f;    // values, permuted values
};

// Fills p from a validated layer. own: copy the arrays into p (else p points at them and at this
// thread's scratch, valid until the next call on this thread). one_off: the plan serves a single
// call (st_conv2d_csr/bsr4x1), so arrangements that pay only over many calls are skipped.
int prepare(Plan& p, int32_t block, const st_conv2d_shape* s, const int32_t* indptr,
            int64_t indptr_len, const int32_t* indices, int64_t nnz, const float* values,
            int64_t values_len, bool own, bool one_off) {
  p.block = block;
  p.what = block == 1 ? "conv2d_csr" : "conv2d_bsr4x1";
  const char* what = p.what;
  if (!s) return Fail(ST_EINVAL) << what << ": shape is null";
  // The batch is the run's: the shape check sees n = 1, and no tensors (non-null dummies).
  p.s = *s;
  p.s.n = 1;
  static const float dummy_x = 0.f;
  float dummy_out = 0.f;
  if (int rc = check_conv_shape(what, &p.s, &dummy_x, &dummy_out, &p.OH, &p.OW)) return rc;
  s = &p.s;
  p.config = config_generation();
  const IsaTable* tbl = active_table();
  if (!tbl) return ST_EUNSUPPORTED;
  p.isa = *tbl;
  const int64_t cols = static_cast<int64_t>(s->cin) * s->kh * s->kw;
  if (int rc = validate_sparse(what, s->cout, cols, block, indptr, indptr_len, indices, nnz, values,
                               values_len))
    return rc;
  if (forced_path().load() == kBadEnv)
    return Fail(ST_EINVAL) << what << ": ST_KERNELS_CONV1X1=" << std::getenv("ST_KERNELS_CONV1X1")
                           << " is not one of auto, gather, direct";

  // A one-off plan pays the regrouping on every call: only where the conv is large enough to hide
  // it (at 14^2 it cost 12-25 % of the call; 28^2 and up gained 1.12-1.15x).
  const int64_t wide = static_cast<int64_t>(p.OH) * (p.OW + s->kw - 1);
  const int32_t kx_width = !one_off || wide >= 512 ? kx_split_width(block, tbl, s, nnz) : 0;
  p.kx_split = kx_width > 0;
  p.L = make_layout(s->h, s->w, s->kh, s->kw, s->stride, s->pad, kx_width ? kx_width : 1);
  const PhaseLayout& L = p.L;
  const int64_t hw = static_cast<int64_t>(s->h) * s->w;
  const int32_t kk = s->kh * s->kw;
  // 1x1/stride 1 needs no padded layout. Gathered tiles (core/gather.h) read x in place whatever
  // its alignment; direct reads x in place when every channel plane starts on a cache line
  // (decided per call: otherwise nearly every vector load straddles two lines, 1.3-1.7x slower)
  // and else packs a copy with planes padded to 16 floats, which is hw itself whenever in place
  // is possible, so the offsets hold for both.
  const Conv1x1Path path = L.identity() ? conv1x1_path(block, s->cin, hw, nnz) : Conv1x1Path::kNone;
  p.gather = path == Conv1x1Path::kGather;
  p.direct = path == Conv1x1Path::kDirect;
  p.chan_pitch = p.gather ? kGatherTile : p.direct ? (hw + 15) / 16 * 16 : L.chan_pitch;
  p.total = p.chan_pitch * s->cin + layout_slack(L);
  if (p.total > INT32_MAX)
    return Fail(ST_EUNSUPPORTED) << what << ": input of " << p.total
                                 << " floats per image exceeds the 32-bit offsets of the kernels";
  p.nnz = nnz;
  p.brows = static_cast<int32_t>(indptr_len - 1);
  p.values_len = values_len;

  // Storage: owned vectors, or this thread's scratch. nnz + 1 offsets: the kx-split compaction
  // below may write one entry past a row's end.
  int32_t *off = nullptr, *kxseg = nullptr;
  float* pv = nullptr;
  const int64_t seg_len = p.kx_split ? 4 * static_cast<int64_t>(s->cout) : 0;
  if (own) {
    p.own_i.resize(static_cast<size_t>(indptr_len + nnz + (nnz + 1) + seg_len));
    p.own_f.resize(static_cast<size_t>(values_len + (p.kx_split ? nnz + 1 : 0)));
    int32_t* q = p.own_i.data();
    std::memcpy(q, indptr, sizeof(int32_t) * indptr_len);
    p.indptr = q;
    q += indptr_len;
    if (nnz) std::memcpy(q, indices, sizeof(int32_t) * nnz);
    p.indices = q;
    q += nnz;
    off = q;
    q += nnz + 1;
    kxseg = p.kx_split ? q : nullptr;
    if (values_len) std::memcpy(p.own_f.data(), values, sizeof(float) * values_len);
    p.values = p.own_f.data();
    pv = p.kx_split ? p.own_f.data() + values_len : nullptr;
  } else {
    p.indptr = indptr;
    p.indices = indices;
    p.values = values;
    off = static_cast<int32_t*>(scratch(kSlotOffsets, sizeof(int32_t) * (nnz + 1)));
    if (p.kx_split) {
      kxseg = static_cast<int32_t*>(scratch(kSlotSegments, sizeof(int32_t) * seg_len));
      pv = static_cast<float*>(scratch(kSlotValues, sizeof(float) * (nnz + 1)));
    }
    if (!off || (p.kx_split && (!kxseg || !pv))) return Fail(ST_ENOMEM) << what << ": out of memory for scratch";
  }
  // Column (channel, tap) -> input offset: a table lookup per nonzero instead of a division.
  int32_t* col_off = static_cast<int32_t*>(scratch(kSlotColumns, sizeof(int32_t) * cols));
  if (!col_off) return Fail(ST_ENOMEM) << what << ": out of memory for scratch";
  for (int32_t ci = 0; ci < s->cin; ++ci)
    for (int32_t t = 0; t < kk; ++t)
      col_off[ci * kk + t] = static_cast<int32_t>(
          ci * p.chan_pitch + (L.identity() ? 0 : L.tap_offset(t / s->kw, p.kx_split ? 0 : t % s->kw)));
  p.val = p.values;
  if (p.kx_split) {
    // Each row's nonzeros regrouped by kx (stably: channel order within a kx), values permuted
    // alike; column c has kx = c % 3 (kw = 3). Three branchless compaction passes per row (a
    // data-dependent branch per nonzero mispredicted most of the time).
    for (int32_t r = 0; r < s->cout; ++r) {
      const int32_t b = indptr[r], e = indptr[r + 1];
      int32_t* sg = kxseg + 4 * static_cast<int64_t>(r);
      int32_t d = b;
      for (int32_t kx = 0; kx < 3; ++kx) {
        sg[kx] = d;
        for (int32_t k = b; k < e; ++k) {
          const int32_t c = indices[k];
          off[d] = col_off[c];
          pv[d] = values[k];
          d += c % 3 == kx;
        }
      }
      sg[3] = e;
    }
    p.val = pv;
  } else {
    for (int64_t j = 0; j < nnz; ++j) off[j] = col_off[indices[j]];
  }
  p.off = off;
  p.kxseg = kxseg;
  return ST_OK;
}

int run(const Plan& p, int32_t n_img, const float* x, const float* bias, const float* residual,
        float* out) {
  const char* what = p.what;
  const st_conv2d_shape* s = &p.s;
  if (!x || !out) return Fail(ST_EINVAL) << what << ": input or output pointer is null";
  if (n_img < 1) return Fail(ST_EINVAL) << what << ": batch must be >= 1, got " << n_img;
  const PhaseLayout& L = p.L;
  const int64_t hw = static_cast<int64_t>(s->h) * s->w;
  const bool aligned = reinterpret_cast<uintptr_t>(x) % 64 == 0 && hw % 16 == 0;
  const bool ident = p.gather || (p.direct && aligned);
  const bool packed = L.identity() && !ident;
  float* buf = ident ? nullptr : static_cast<float*>(scratch(kSlotLayout, sizeof(float) * p.total));
  if (!ident && !buf) return Fail(ST_ENOMEM) << what << ": out of memory for scratch";
  const int64_t chan_pitch = ident && !p.gather ? hw : p.chan_pitch;
  if (!ident) std::memset(buf + chan_pitch * s->cin, 0, sizeof(float) * layout_slack(L));

  ConvJob job{};
  job.rowptr = p.indptr;
  job.off = p.off;
  job.val = p.val;
  job.kxseg = p.kxseg;
  job.cout = s->cout;
  job.Wq = ident ? p.OW : L.Wq;
  job.Q = p.OH * job.Wq;
  job.OW = p.OW;
  job.OHW = p.OH * p.OW;
  job.bias = bias;
  job.act = s->act;
  job.gather = p.gather;
  job.cin = s->cin;
  job.xpitch = hw;
  int32_t failed = 0;
  job.failed = &failed;
  ConvKernel kern = p.block == 1 ? p.isa.conv2d_csr : p.isa.conv2d_bsr4x1;

  const int64_t in_img = static_cast<int64_t>(s->cin) * hw;
  const int64_t out_img = static_cast<int64_t>(s->cout) * p.OH * p.OW;
  // Channels [c0, c1) of image xn into the layout at dst (nothing to do where the kernel reads x).
  const auto fill = [&](const float* xn, float* dst, int32_t c0, int32_t c1) {
    for (int32_t c = c0; c < c1; ++c) {
      const float* src = xn + static_cast<int64_t>(c) * hw;
      if (packed) {
        std::memcpy(dst + c * chan_pitch, src, sizeof(float) * hw);
        std::memset(dst + c * chan_pitch + hw, 0, sizeof(float) * (chan_pitch - hw));
      } else {
        fill_channel(L, src, dst + c * chan_pitch);
      }
    }
  };

  const int nt = num_threads();
  const double flops = 2.0 * static_cast<double>(p.nnz) * p.block * job.Q;  // one image
  int32_t n = 0;
  // A batch of at least as many images as threads: whole images per task, so a layer costs one
  // fork-join instead of two per image, and each image's layout is filled and read on one core.
  // The images left over (fewer than the threads) split within the image as at batch 1.
  if (nt > 1 && n_img >= nt && flops * n_img >= kMinParallelFlops) {
    const int32_t whole = n_img / nt * nt;
    parallel_for(whole, [&](int i) {
      ConvJob j = job;
      const float* xn = x + i * in_img;
      if (ident) {
        j.X = xn;
      } else {
        float* own = static_cast<float*>(scratch(kSlotLayout, sizeof(float) * p.total));
        if (!own) {
          *job.failed = 1;
          return;
        }
        std::memset(own + chan_pitch * s->cin, 0, sizeof(float) * layout_slack(L));
        fill(xn, own, 0, s->cin);
        j.X = own;
      }
      j.res = residual ? residual + i * out_img : nullptr;
      j.out = out + i * out_img;
      kern(j, 0, p.brows, 0, j.Q);
    });
    n = whole;
  }

  // Tasks: wide-position chunks x row chunks (rows balanced by nonzeros).
  std::vector<int32_t> qs{0, job.Q}, rs{0, p.brows};
  if (nt > 1 && flops >= kMinParallelFlops) {
    const int want = 4 * nt;
    qs = split_quantum(job.Q, want);
    const int qparts = static_cast<int>(qs.size()) - 1;
    rs = split_rows_by_nnz(p.indptr, p.brows, (want + qparts - 1) / qparts);
  }
  const int nq = static_cast<int>(qs.size()) - 1, nr = static_cast<int>(rs.size()) - 1;
  const int fill_tasks = std::min<int>(s->cin, nt > 1 && flops >= kMinParallelFlops ? 2 * nt : 1);
  for (; n < n_img && !failed; ++n) {
    const float* xn = x + n * in_img;
    if (ident) {
      job.X = xn;
    } else {
      parallel_for(fill_tasks, [&](int t) {
        fill(xn, buf, static_cast<int32_t>(static_cast<int64_t>(s->cin) * t / fill_tasks),
             static_cast<int32_t>(static_cast<int64_t>(s->cin) * (t + 1) / fill_tasks));
      });
      job.X = buf;
    }
    job.res = residual ? residual + n * out_img : nullptr;
    job.out = out + n * out_img;
    parallel_for(nq * nr, [&](int t) {
      const int qi = t % nq, ri = t / nq;
      kern(job, rs[ri], rs[ri + 1], qs[qi], qs[qi + 1]);
    });
  }
  if (failed == 2) return Fail(ST_EINTERNAL) << what << ": kx-split job on an ISA without lane shifts";
  if (failed) return Fail(ST_ENOMEM) << what << ": out of memory for a thread's layout or tile buffer";
  return ST_OK;
}

int conv2d_sparse(int32_t block, const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                  int64_t indptr_len, const int32_t* indices, int64_t nnz, const float* values,
                  int64_t values_len, const float* bias, const float* residual, float* out) {
  clear_error();
  Plan p;  // prepare checks the shape and the layer, run the tensors and the batch
  if (int rc = prepare(p, block, s, indptr, indptr_len, indices, nnz, values, values_len, false, true))
    return rc;
  return run(p, s->n, x, bias, residual, out);
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
  st::bump_config_generation();
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
int st_conv2d_plan_create(int32_t block_rows, const st_conv2d_shape* s, const int32_t* indptr,
                          int64_t indptr_len, const int32_t* indices, int64_t nnz,
                          const float* values, int64_t values_len, st_conv2d_plan** plan) {
  st::clear_error();
  if (!plan) return st::Fail(ST_EINVAL) << "conv2d_plan_create: plan is null";
  *plan = nullptr;
  if (block_rows != 1 && block_rows != 4)
    return st::Fail(ST_EINVAL) << "conv2d_plan_create: block_rows must be 1 (CSR) or 4 (BSR4x1), got "
                               << block_rows;
  st::Plan* p = nullptr;
  try {
    p = new st::Plan();
    if (int rc = st::prepare(*p, block_rows, s, indptr, indptr_len, indices, nnz, values, values_len, true, false)) {
      delete p;
      return rc;
    }
  } catch (const std::bad_alloc&) {
    delete p;
    return st::Fail(ST_ENOMEM) << "conv2d_plan_create: out of memory";
  }
  *plan = reinterpret_cast<st_conv2d_plan*>(p);
  return ST_OK;
}

int st_conv2d_plan_run(const st_conv2d_plan* plan, int32_t n, const float* x, const float* bias,
                       const float* residual, float* out) {
  st::clear_error();
  if (!plan) return st::Fail(ST_EINVAL) << "conv2d_plan_run: plan is null";
  const st::Plan& p = *reinterpret_cast<const st::Plan*>(plan);
  if (p.config == st::config_generation()) return st::run(p, n, x, bias, residual, out);
  // ISA or 1x1 path changed since the plan was made: plan again for this call, from its own copy,
  // deciding as a lasting plan would (the same arrangement, so the same results as a new plan).
  st::Plan q;
  if (int rc = st::prepare(q, p.block, &p.s, p.indptr, p.brows + 1, p.indices, p.nnz, p.values,
                           p.values_len, false, false))
    return rc;
  return st::run(q, n, x, bias, residual, out);
}

void st_conv2d_plan_free(st_conv2d_plan* plan) { delete reinterpret_cast<st::Plan*>(plan); }

int st_conv2d_plan_matches(const st_conv2d_plan* plan, int32_t block_rows, const st_conv2d_shape* s,
                           const int32_t* indptr, int64_t indptr_len, const int32_t* indices,
                           int64_t nnz, const float* values, int64_t values_len) {
  if (!plan || !s || !indptr || (nnz > 0 && (!indices || !values))) return 0;
  const st::Plan& p = *reinterpret_cast<const st::Plan*>(plan);
  const st_conv2d_shape& q = p.s;
  if (p.config != st::config_generation()) return 0;  // made under other settings: make a new one
  if (p.block != block_rows || q.cin != s->cin || q.h != s->h || q.w != s->w || q.cout != s->cout ||
      q.kh != s->kh || q.kw != s->kw || q.stride != s->stride || q.pad != s->pad || q.act != s->act)
    return 0;
  if (p.brows + 1 != indptr_len || p.nnz != nnz || p.values_len != values_len) return 0;
  return std::memcmp(p.indptr, indptr, sizeof(int32_t) * indptr_len) == 0 &&
         (nnz == 0 || std::memcmp(p.indices, indices, sizeof(int32_t) * nnz) == 0) &&
         (values_len == 0 || std::memcmp(p.values, values, sizeof(float) * values_len) == 0);
}

int st_conv2d_plan_output(const st_conv2d_plan* plan, int32_t* oh, int32_t* ow) {
  st::clear_error();
  if (!plan || !oh || !ow) return st::Fail(ST_EINVAL) << "conv2d_plan_output: null argument";
  const st::Plan& p = *reinterpret_cast<const st::Plan*>(plan);
  *oh = p.OH;
  *ow = p.OW;
  return ST_OK;
}

int st_conv2d_bsr4x1(const st_conv2d_shape* s, const float* x, const int32_t* indptr,
                     int64_t indptr_len, const int32_t* indices, int64_t nnzb, const float* values,
                     int64_t values_len, const float* bias, const float* residual, float* out) {
  return st::conv2d_sparse(4, s, x, indptr, indptr_len, indices, nnzb, values, values_len, bias,
                           residual, out);
}
}
