// st.sparse::SparseConv for ONNX Runtime, on the st_kernels C ABI (kernels/include/st_kernels.h).
//
// Inputs: X, indptr (int32), indices (int32), values (float), bias (float), residual (optional).
// Y = act(conv(X) + bias) + residual. Attributes and formats: st_deploy/export/onnx/sparse_ops.py.
//
// The weight arrays must be initializers: the kernel copies and validates them once, when the
// session is created, so a malformed model fails there with a message naming the node instead
// of reading out of bounds at run time. Compute re-checks only the activation's shape; a conv
// runs through an st_kernels plan per part and input size, made at its first run (PlanFor).
#include "sparse_conv_op.h"

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "st_kernels.h"

namespace st_ort {
namespace {

int act_code(const std::string& act) {
  if (act == "none" || act == "swish" || act == "hswish") return ST_ACT_NONE;  // last two applied here
  if (act == "relu") return ST_ACT_RELU;
  if (act == "relu6") return ST_ACT_RELU6;
  return -1;
}

// Copies constant input `index` of type T, or explains why it cannot.
template <typename T>
std::string constant_input(const Ort::ConstKernelInfo& info, size_t index, const char* what,
                           std::vector<T>* out) {
  int is_constant = 0;
  Ort::ConstValue v = info.GetTensorConstantInput(index, &is_constant);
  if (!is_constant) return std::string(what) + " must be an initializer (constant)";
  auto ti = v.GetTensorTypeAndShapeInfo();
  if (ti.GetShape().size() != 1) return std::string(what) + " must be 1-D";
  const size_t n = ti.GetElementCount();
  const T* p = v.GetTensorData<T>();
  out->assign(p, p + n);
  return "";
}

// The context of the Compute call running on this thread, for ort_launch.
thread_local OrtKernelContext* tl_context = nullptr;

// st_kernels' parallel loops on ORT's intra-op pool (KernelContext::ParallelFor): one ORT task
// per thread, each draining the kernels' task counter. Declines outside a kOrt Compute call,
// so a kKernels session in the same process keeps st_kernels' own pool.
int ort_launch(int32_t ntasks, st_task_fn fn, void* arg) {
  if (tl_context == nullptr) return -1;
  struct Host {
    st_task_fn fn;
    void* arg;
  } host{fn, arg};
  const size_t n = static_cast<size_t>(std::max(1, std::min<int32_t>(ntasks, st_get_num_threads())));
  try {
    Ort::KernelContext(tl_context).ParallelFor(
        [](void* data, size_t i) {
          auto* h = static_cast<Host*>(data);
          h->fn(static_cast<int32_t>(i), h->arg);
        },
        n, 0, &host);
  } catch (const Ort::Exception&) {
    // Tasks nobody claimed run on the caller (st_kernels drains the counter after we return).
  }
  return 0;
}

}  // namespace

SparseConvKernel::SparseConvKernel(const OrtKernelInfo* raw, int num_threads, Parallel parallel)
    : num_threads_(num_threads), parallel_(parallel) {
  Ort::ConstKernelInfo info(raw);
  name_ = info.GetNodeName();
  std::vector<int64_t> ks, st, pd;
  int64_t cin = 0, cout = 0, group = 0;
  try {
    format_ = info.GetAttribute<std::string>("format");
    activation_ = info.GetAttribute<std::string>("activation");
    cin = info.GetAttribute<int64_t>("in_channels");
    cout = info.GetAttribute<int64_t>("out_channels");
    group = info.GetAttribute<int64_t>("group");
    ks = info.GetAttributes<int64_t>("kernel_shape");
    st = info.GetAttributes<int64_t>("strides");
    pd = info.GetAttributes<int64_t>("pads");
  } catch (const Ort::Exception& e) {
    // ORT's own text ("No attribute with name:'group'is defined.") does not say which node.
    Fail(std::string("bad or missing attribute: ") + e.what());
  }
  if (ks.size() != 2 || ks[0] != ks[1] || st.size() != 2 || st[0] != st[1] || pd.size() != 4 ||
      pd[0] != pd[1] || pd[0] != pd[2] || pd[0] != pd[3]) {
    Fail("kernel_shape, strides and pads must be square/symmetric ([k,k], [s,s], [p,p,p,p])");
  }
  // Range-check in int64 before narrowing: a cast alone turned in_channels = 2^32 + 16 into 16
  // (or group = 2^33 + 1 into 1) and ran a layer the model does not describe.
  const int64_t kmax = INT32_MAX;
  if (cin < 1 || cin > kmax || cout < 1 || cout > kmax || ks[0] < 1 || ks[0] > kmax || st[0] < 1 ||
      st[0] > kmax || pd[0] < 0 || pd[0] > kmax || group < 1 || group > kmax)
    Fail("in/out channels, group, kernel and stride must be in [1, 2^31) and pads in [0, 2^31), got in_channels " +
         std::to_string(cin) + ", out_channels " + std::to_string(cout) + ", group " + std::to_string(group) +
         ", kernel " + std::to_string(ks[0]) + ", stride " + std::to_string(st[0]) + ", pad " + std::to_string(pd[0]));
  cin_ = static_cast<int32_t>(cin);
  cout_ = static_cast<int32_t>(cout);
  group_ = static_cast<int32_t>(group);
  k_ = static_cast<int32_t>(ks[0]);
  stride_ = static_cast<int32_t>(st[0]);
  pad_ = static_cast<int32_t>(pd[0]);
  act_ = act_code(activation_);
  if (act_ < 0) Fail("unknown activation '" + activation_ + "'");

  int32_t rows = cout_, cols = 0, block_rows = 1;
  int64_t cols64 = 0;  // in int64: cin * k * k overflowed int32 for hostile attributes
  if (format_ == "csr" || format_ == "bsr4x1") {
    if (group_ != 1) Fail("format " + format_ + " needs group = 1");
    cols64 = static_cast<int64_t>(cin_) * k_ * k_;
    block_rows = format_ == "bsr4x1" ? 4 : 1;
  } else if (format_ == "dwcsr") {
    if (group_ != cin_ || cin_ != cout_) Fail("format dwcsr needs group = in_channels = out_channels");
    cols64 = static_cast<int64_t>(k_) * k_;
  } else {
    Fail("unknown format '" + format_ + "' (csr, bsr4x1 or dwcsr)");
  }
  if (cols64 > kmax) Fail("in_channels * k * k = " + std::to_string(cols64) + " does not fit in int32");
  cols = static_cast<int32_t>(cols64);
  std::string e;
  if (!(e = constant_input(info, 1, "indptr", &indptr_)).empty() ||
      !(e = constant_input(info, 2, "indices", &indices_)).empty() ||
      !(e = constant_input(info, 3, "values", &values_)).empty() ||
      !(e = constant_input(info, 4, "bias", &bias_)).empty())
    Fail(e);
  // A NaN/Inf weight cannot be served consistently: the dense model (and ORT's Conv) multiplies it
  // by the zero padding (NaN * 0 = NaN over the whole channel) while the depthwise kernels skip
  // padded taps, so the two would silently disagree at the borders. The exporter never writes one
  // (its fidelity check fails on a non-finite output); refuse it here with the position.
  for (const auto* arr : {&values_, &bias_}) {
    for (size_t j = 0; j < arr->size(); ++j) {
      if (!std::isfinite((*arr)[j]))
        Fail(std::string(arr == &values_ ? "values" : "bias") + "[" + std::to_string(j) + "] is " +
             std::to_string((*arr)[j]) + ": non-finite weights are refused");
    }
  }
  if (static_cast<int64_t>(bias_.size()) != cout_)
    Fail("bias has " + std::to_string(bias_.size()) + " entries, out_channels is " + std::to_string(cout_));
  if (st_validate_sparse(rows, cols, block_rows, indptr_.data(), static_cast<int64_t>(indptr_.size()),
                         indices_.data(), static_cast<int64_t>(indices_.size()),
                         static_cast<int64_t>(values_.size())) != ST_OK)
    Fail(st_last_error());
  // An optional input left out by name ("" in the node's input list) still counts in
  // GetInputCount(); taking it for a residual read a null tensor (segfault at run time).
  has_residual_ = info.GetInputCount() > 5 && !info.GetInputName(5).empty();
  block_ = block_rows;
  if (parallel_ == Parallel::kOrt) st_set_parallel_launcher(ort_launch);
}

int SparseConvKernel::Run(const st_conv2d_shape& s, bool linear, const float* x, const float* res,
                          float* out) const {
  const int64_t nz = indptr_.back(), ilen = static_cast<int64_t>(indptr_.size());
  if (format_ == "dwcsr")
    return st_dwconv2d_csr(&s, x, indptr_.data(), ilen, indices_.data(), nz, values_.data(), nz, bias_.data(),
                           res, out);
  if (linear && format_ == "csr") {
    int rc = st_linear_csr(s.n, cin_, cout_, x, indptr_.data(), ilen, indices_.data(), nz, values_.data(), nz,
                           bias_.data(), act_, out);
    if (rc == ST_OK && res) {
      for (int64_t i = 0; i < static_cast<int64_t>(s.n) * cout_; ++i) out[i] += res[i];
    }
    return rc;
  }
  // csr / bsr4x1 conv (a bsr4x1 linear layer is a 1x1 conv of a 1x1 input): the layer's plan,
  // checked and arranged once per input size.
  std::shared_ptr<st_conv2d_plan> plan;
  if (int rc = PlanFor(s, &plan)) return rc;
  return st_conv2d_plan_run(plan.get(), s.n, x, bias_.data(), res, out);
}

int SparseConvKernel::PlanFor(const st_conv2d_shape& s, std::shared_ptr<st_conv2d_plan>* out) const {
  std::lock_guard<std::mutex> lock(plan_mu_);
  const auto key = std::make_pair(s.h, s.w);
  auto it = plans_.find(key);
  if (it != plans_.end()) {
    *out = it->second;
    return ST_OK;
  }
  st_conv2d_shape ps = s;
  ps.n = 1;
  const int64_t nz = indptr_.back();
  st_conv2d_plan* plan = nullptr;
  if (int rc = st_conv2d_plan_create(block_, &ps, indptr_.data(), static_cast<int64_t>(indptr_.size()),
                                     indices_.data(), nz, values_.data(), nz * block_, &plan))
    return rc;
  // A stream of new input sizes must not grow the cache without bound; a Compute still running a
  // dropped plan holds its own reference.
  if (plans_.size() >= 64) plans_.clear();
  *out = std::shared_ptr<st_conv2d_plan>(plan, st_conv2d_plan_free);
  plans_.emplace(key, *out);
  return ST_OK;
}

void SparseConvKernel::Fail(const std::string& why) const {
  throw Ort::Exception("SparseConv node '" + name_ + "': " + why, ORT_INVALID_GRAPH);
}

OrtStatusPtr SparseConvKernel::ComputeV2(OrtKernelContext* raw) {
  try {
    Compute(raw);
    return nullptr;
  } catch (const Ort::Exception& e) {
    return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_RUNTIME_EXCEPTION, e.what());
  }
}

void SparseConvKernel::Compute(OrtKernelContext* raw) {
  Ort::KernelContext ctx(raw);
  auto x = ctx.GetInput(0);
  const std::vector<int64_t> xs = x.GetTensorTypeAndShapeInfo().GetShape();
  const bool linear = xs.size() == 2;
  if (!(xs.size() == 4 || (linear && k_ == 1 && format_ != "dwcsr")) || xs[1] != cin_) {
    std::ostringstream m;
    m << "input has shape [";
    for (size_t i = 0; i < xs.size(); ++i) m << (i ? ", " : "") << xs[i];
    m << "], expected [N, " << cin_ << (linear ? "]" : ", H, W]");
    Fail(m.str());
  }
  st_conv2d_shape s{};
  s.n = static_cast<int32_t>(xs[0]);
  s.cin = cin_;
  s.h = linear ? 1 : static_cast<int32_t>(xs[2]);
  s.w = linear ? 1 : static_cast<int32_t>(xs[3]);
  s.cout = cout_;
  s.kh = s.kw = k_;
  s.stride = stride_;
  s.pad = pad_;
  s.act = act_;
  const int64_t oh = (static_cast<int64_t>(s.h) + 2 * pad_ - k_) / stride_ + 1;
  const int64_t ow = (static_cast<int64_t>(s.w) + 2 * pad_ - k_) / stride_ + 1;
  if (oh < 1 || ow < 1) Fail("input is smaller than the kernel");
  std::vector<int64_t> ys = linear ? std::vector<int64_t>{xs[0], cout_}
                                   : std::vector<int64_t>{xs[0], cout_, oh, ow};
  auto y = ctx.GetOutput(0, ys);
  float* out = y.GetTensorMutableData<float>();
  const size_t out_len = y.GetTensorTypeAndShapeInfo().GetElementCount();

  const float* res = nullptr;
  if (has_residual_) {
    auto r = ctx.GetInput(5);
    if (r == nullptr) Fail("residual input is missing");
    if (r.GetTensorTypeAndShapeInfo().GetShape() != ys) Fail("residual shape differs from the output shape");
    res = r.GetTensorData<float>();
  }
  if (out_len == 0) return;  // an empty batch: nothing to compute (ORT may give empty tensors null data)
  // swish / hswish are not kernel epilogues: run with act none, then activate and add here.
  const bool post = activation_ == "swish" || activation_ == "hswish";
  const float* kres = post ? nullptr : res;
  const float* xp = x.GetTensorData<float>();
  // Either way the kernels split the layer (wide positions x rows, the input staging too; whole
  // images at batch >= threads) for num_threads_ threads; kOrt runs the pieces on ORT's intra-op
  // pool (ort_launch), kKernels on st_kernels' own. An earlier kOrt cut each layer into
  // output-channel slices run as separate single-threaded layers, which staged the whole input
  // once per slice (example ticket, 2 threads, other processes paused: 9.3-10.0 ms vs 9.1 ms).
  if (num_threads_ > 0 && st_get_num_threads() != num_threads_) st_set_num_threads(num_threads_);
  int rc;
  if (parallel_ == Parallel::kOrt) {
    tl_context = raw;
    rc = Run(s, linear, xp, kres, out);
    tl_context = nullptr;
  } else {
    rc = Run(s, linear, xp, kres, out);
  }
  if (rc != ST_OK) Fail(std::string("kernel failed: ") + st_last_error());
  if (post) {  // vectorised, in place (st_activate)
    rc = st_activate(out, res, out, static_cast<int64_t>(out_len), activation_ == "hswish" ? ST_ACT_HSWISH : ST_ACT_SWISH);
    if (rc != ST_OK) Fail(std::string("activation failed: ") + st_last_error());
  }
}

// -- the op --------------------------------------------------------------------------------
OrtStatusPtr SparseConvOp::CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
  try {
    *kernel = new SparseConvKernel(info, num_threads_, parallel_);
    return nullptr;
  } catch (const Ort::Exception& e) {
    return api.CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return api.CreateStatus(ORT_INVALID_GRAPH, e.what());
  }
}

ONNXTensorElementDataType SparseConvOp::GetInputType(size_t index) const {
  return index == 1 || index == 2 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

OrtCustomOpInputOutputCharacteristic SparseConvOp::GetInputCharacteristic(size_t index) const {
  return index == 5 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
}

// Output shape from the input shape and attributes, so ORT plans memory and downstream
// optimisations see a typed, shaped tensor.
Ort::Status SparseConvOp::InferOutputShape(Ort::ShapeInferContext& ctx) {
  // ORT's wrapper calls this without a try block: an exception (a missing attribute) must not escape.
  try {
    return InferOutputShapeChecked(ctx);
  } catch (const std::exception& e) {
    return Ort::Status((std::string("SparseConv: bad or missing attribute: ") + e.what()).c_str(), ORT_INVALID_GRAPH);
  }
}

Ort::Status SparseConvOp::InferOutputShapeChecked(Ort::ShapeInferContext& ctx) {
  auto xs = ctx.GetInputShape(0);
  const int64_t cout = ctx.GetAttrInt("out_channels");
  using Dim = Ort::ShapeInferContext::SymbolicInteger;
  if (cout < 1 || cout > INT32_MAX) return Ort::Status("SparseConv: out_channels out of range", ORT_INVALID_GRAPH);
  if (xs.size() == 2) return ctx.SetOutputShape(0, {xs[0], Dim(cout)});
  if (xs.size() != 4) return Ort::Status("SparseConv: input must be 2-D or 4-D", ORT_INVALID_GRAPH);
  auto ks = ctx.GetAttrInts("kernel_shape");
  auto st = ctx.GetAttrInts("strides");
  auto pd = ctx.GetAttrInts("pads");
  if (ks.size() != 2 || st.size() != 2 || pd.size() != 4)
    return Ort::Status("SparseConv: bad kernel_shape/strides/pads", ORT_INVALID_GRAPH);
  // Bounded so the arithmetic below cannot overflow int64 (the kernel then refuses what it cannot run).
  for (int d = 0; d < 4; ++d) {
    if ((d < 2 && (ks[d] < 1 || ks[d] > INT32_MAX || st[d] < 1 || st[d] > INT32_MAX)) || pd[d] < 0 || pd[d] > INT32_MAX)
      return Ort::Status("SparseConv: kernel_shape/strides must be in [1, 2^31), pads in [0, 2^31)", ORT_INVALID_GRAPH);
  }
  Ort::ShapeInferContext::Shape ys{xs[0], Dim(cout), Dim(int64_t{-1}), Dim(int64_t{-1})};
  for (int d = 0; d < 2; ++d) {
    // A symbolic H or W gives an unknown (-1) output dim; the exported models fix both.
    if (xs[2 + d].IsInt() && xs[2 + d].AsInt() >= 0)
      ys[2 + d] = Dim((xs[2 + d].AsInt() + pd[d] + pd[d + 2] - ks[d]) / st[d] + 1);
  }
  return ctx.SetOutputShape(0, ys);
}

}  // namespace st_ort
