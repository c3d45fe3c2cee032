// st.sparse::SparseConv: the ONNX Runtime op class and its kernel (see sparse_conv_op.cc).
#pragma once
#define ORT_API_MANUAL_INIT  // the API table comes from the loading runtime in RegisterCustomOps
#include <onnxruntime_cxx_api.h>

#include "st_kernels.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace st_ort {

// How a SparseConv spreads over threads (session config "st.sparse.parallel").
enum class Parallel {
  kKernels,  // st_kernels' own sleeping pool, st.sparse.num_threads workers
  kOrt,      // ORT's intra-op pool: st_kernels' tasks run by KernelContext::ParallelFor
};

class SparseConvKernel {
 public:
  // Reads attributes and the constant weight arrays, validates them; throws Ort::Exception.
  SparseConvKernel(const OrtKernelInfo* info, int num_threads, Parallel parallel);
  OrtStatusPtr ComputeV2(OrtKernelContext* context);

 private:
  void Compute(OrtKernelContext* context);
  [[noreturn]] void Fail(const std::string& why) const;
  // Runs the layer on a batch; returns the st_kernels status.
  int Run(const st_conv2d_shape& s, bool linear, const float* x, const float* res, float* out) const;
  // The st_kernels plan of a csr/bsr4x1 layer for inputs of s.h x s.w, made at its first use;
  // returns the st_kernels status (st_last_error() says why). Compute may run on several threads.
  int PlanFor(const st_conv2d_shape& s, std::shared_ptr<st_conv2d_plan>* plan) const;

  std::string name_, format_, activation_;
  int32_t cin_ = 0, cout_ = 0, group_ = 1, k_ = 1, stride_ = 1, pad_ = 0, act_ = 0;
  int num_threads_;  // 0: leave st_kernels' own setting
  Parallel parallel_;
  int32_t block_ = 1;     // rows per indptr entry: 4 for bsr4x1
  bool has_residual_ = false;
  std::vector<int32_t> indptr_, indices_;
  std::vector<float> values_, bias_;
  mutable std::mutex plan_mu_;
  mutable std::map<std::pair<int32_t, int32_t>, std::shared_ptr<st_conv2d_plan>> plans_;  // by (h, w)
};

// One instance per registration (per session options), carrying that session's thread count.
struct SparseConvOp : Ort::CustomOpBase<SparseConvOp, SparseConvKernel, /*WithStatus=*/true> {
  SparseConvOp(int num_threads, Parallel parallel) : num_threads_(num_threads), parallel_(parallel) {}
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const;
  const char* GetName() const { return "SparseConv"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 6; }
  ONNXTensorElementDataType GetInputType(size_t index) const;
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const;
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  static Ort::Status InferOutputShape(Ort::ShapeInferContext& ctx);
  static Ort::Status InferOutputShapeChecked(Ort::ShapeInferContext& ctx);

 private:
  int num_threads_;
  Parallel parallel_;
};

}  // namespace st_ort
