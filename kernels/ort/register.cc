// Entry point ONNX Runtime calls when the library is registered on a SessionOptions
// (SessionOptions.register_custom_ops_library / RegisterCustomOpsLibrary).
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "sparse_conv_op.h"
#include "st_kernels.h"

namespace {
constexpr const char* kDomain = "st.sparse";
// Session config key for the kernels' thread count (st_deploy.ort_session sets it).
constexpr const char* kThreadsKey = "st.sparse.num_threads";
// "kernels" (st_kernels' pool) or "ort" (ORT's intra-op pool through KernelContext::ParallelFor).
constexpr const char* kParallelKey = "st.sparse.parallel";

// ORT needs the domain and op objects to outlive every session that uses them, and gives no
// unregister callback: keep one pair per registration for the life of the process.
std::mutex g_mu;
std::deque<std::unique_ptr<st_ort::SparseConvOp>> g_ops;
std::deque<Ort::CustomOpDomain> g_domains;
}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  // API 21 (the headers we build with) is served by every runtime since 1.21.
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) return nullptr;  // ORT then reports the failed registration itself
  Ort::InitApi(api);
  try {
    Ort::UnownedSessionOptions so(options);
    const std::string t = so.GetConfigEntryOrDefault(kThreadsKey, "0");
    int threads = 0;
    try {
      threads = std::stoi(t);
    } catch (const std::exception&) {
      threads = -1;
    }
    if (threads < 0 || threads > 1024)
      return api->CreateStatus(ORT_INVALID_ARGUMENT, (std::string(kThreadsKey) + " must be an int in [0, 1024], got '" + t + "'").c_str());
    const std::string par = so.GetConfigEntryOrDefault(kParallelKey, "kernels");
    if (par != "kernels" && par != "ort")
      return api->CreateStatus(ORT_INVALID_ARGUMENT, (std::string(kParallelKey) + " must be 'kernels' or 'ort', got '" + par + "'").c_str());
    const auto parallel = par == "ort" ? st_ort::Parallel::kOrt : st_ort::Parallel::kKernels;
    std::lock_guard<std::mutex> lock(g_mu);
    g_ops.push_back(std::make_unique<st_ort::SparseConvOp>(threads, parallel));
    g_domains.emplace_back(kDomain);
    g_domains.back().Add(g_ops.back().get());
    so.Add(g_domains.back());
    return nullptr;
  } catch (const Ort::Exception& e) {
    return api->CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return api->CreateStatus(ORT_FAIL, e.what());
  }
}
