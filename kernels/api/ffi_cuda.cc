// tvm-ffi entry points of the CUDA kernels (st_kernels_cuda.h). Same argument lists as the CPU
// ones in ffi.cc (destination-passing style, output last) with every tensor on one CUDA device, so
// TVM Relax can call them with R.call_dps_packed("st_deploy.cuda_<name>", ...). Exported as module
// symbols cuda_<name> and registered as globals "st_deploy.cuda_<name>" (compiled out with
// -DST_KERNELS_FFI_NO_GLOBALS, for a TVM model.so that links this object next to another library
// registering the same globals).
//
// Kernels run on the stream tvm-ffi reports for the device (TVMFFIEnvGetStream): TVM sets it for
// its own calls, and tvm_ffi sets torch's current stream when it is called with torch tensors.
// Calls are asynchronous; cuda_check(device_id) synchronizes and raises on a fault recorded by a
// kernel (see st_kernels_cuda.h for the malformed-pattern handling).
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/c_env_api.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>
#include <tvm/ffi/reflection/registry.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "../include/st_kernels_cuda.h"

namespace st_ffi_cuda {
namespace {
using tvm::ffi::Optional;
using tvm::ffi::TensorView;

std::string shape_str(const TensorView& t) {
  std::ostringstream os;
  os << "(";
  for (int i = 0; i < t.ndim(); ++i) os << (i ? ", " : "") << t.size(i);
  os << (t.ndim() == 1 ? ",)" : ")");
  return os.str();
}

// Checks CUDA placement on `device_id`, dtype (float32 or int32), rank and contiguity; returns
// the data pointer.
template <class T>
T* data(const char* op, const char* name, const TensorView& t, int ndim, int device_id) {
  const DLDataType dt = t.dtype();
  const bool want_float = std::is_same<std::remove_const_t<T>, float>::value;
  const uint8_t code = want_float ? kDLFloat : kDLInt;
  const DLDevice dev = t.device();
  if (dev.device_type != kDLCUDA)
    TVM_FFI_THROW(ValueError) << op << ": " << name << " must be on a CUDA device, got device type "
                              << static_cast<int>(dev.device_type);
  if (dev.device_id != device_id)
    TVM_FFI_THROW(ValueError) << op << ": " << name << " is on cuda:" << dev.device_id
                              << " but x is on cuda:" << device_id << " (all tensors must share "
                              << "one device)";
  if (dt.code != code || dt.bits != 32 || dt.lanes != 1)
    TVM_FFI_THROW(ValueError) << op << ": " << name << " must be " << (want_float ? "float32" : "int32")
                              << ", got " << tvm::ffi::DLDataTypeToString(dt);
  if (ndim >= 0 && t.ndim() != ndim)
    TVM_FFI_THROW(ValueError) << op << ": " << name << " must have " << ndim << " dims, got shape "
                              << shape_str(t);
  if (!t.IsContiguous())
    TVM_FFI_THROW(ValueError) << op << ": " << name << " must be contiguous (C order)";
  return reinterpret_cast<T*>(static_cast<char*>(t.data_ptr()) + t.byte_offset());
}

int cuda_device(const char* op, const TensorView& x) {
  if (x.device().device_type != kDLCUDA)
    TVM_FFI_THROW(ValueError) << op << ": x must be on a CUDA device, got device type "
                              << static_cast<int>(x.device().device_type)
                              << " (CPU tensors go to the st_deploy.* CPU kernels)";
  return x.device().device_id;
}

void* stream_of(int device_id) { return TVMFFIEnvGetStream(kDLCUDA, device_id); }

void expect_shape(const char* op, const char* name, const TensorView& t, const std::vector<int64_t>& s) {
  bool ok = t.ndim() == static_cast<int>(s.size());
  for (size_t i = 0; ok && i < s.size(); ++i) ok = t.size(i) == s[i];
  if (!ok) {
    std::ostringstream want;
    want << "(";
    for (size_t i = 0; i < s.size(); ++i) want << (i ? ", " : "") << s[i];
    want << ")";
    TVM_FFI_THROW(ValueError) << op << ": " << name << " has shape " << shape_str(t) << ", expected "
                              << want.str();
  }
}

int32_t to_i32(const char* op, const char* name, int64_t v) {
  if (v < INT32_MIN || v > INT32_MAX) TVM_FFI_THROW(ValueError) << op << ": " << name << " out of range";
  return static_cast<int32_t>(v);
}

void check_rc(int rc) {
  if (rc == ST_OK) return;
  if (rc == ST_EINVAL) TVM_FFI_THROW(ValueError) << st_cuda_last_error();
  TVM_FFI_THROW(RuntimeError) << st_cuda_last_error();
}

struct ConvArgs {
  st_conv2d_shape s{};
  const float* x;
  const float* bias = nullptr;
  const float* res = nullptr;
  float* out;
  int device;
};

// Shape checks shared by the conv ops; cout comes from out.shape[1].
ConvArgs conv_args(const char* op, const TensorView& x, const Optional<TensorView>& bias,
                   const Optional<TensorView>& residual, int64_t kh, int64_t kw, int64_t stride,
                   int64_t pad, int64_t act, const TensorView& out) {
  ConvArgs a;
  a.device = cuda_device(op, x);
  a.x = data<const float>(op, "x", x, 4, a.device);
  a.out = data<float>(op, "out", out, 4, a.device);
  a.s.n = to_i32(op, "x.shape[0]", x.size(0));
  a.s.cin = to_i32(op, "x.shape[1]", x.size(1));
  a.s.h = to_i32(op, "x.shape[2]", x.size(2));
  a.s.w = to_i32(op, "x.shape[3]", x.size(3));
  a.s.cout = to_i32(op, "out.shape[1]", out.size(1));
  a.s.kh = to_i32(op, "kernel_h", kh);
  a.s.kw = to_i32(op, "kernel_w", kw);
  a.s.stride = to_i32(op, "stride", stride);
  a.s.pad = to_i32(op, "pad", pad);
  a.s.act = to_i32(op, "act", act);
  if (kh < 1 || kw < 1 || stride < 1 || pad < 0)
    TVM_FFI_THROW(ValueError) << op << ": need kernel >= 1, stride >= 1, pad >= 0 (got kernel " << kh
                              << "x" << kw << ", stride " << stride << ", pad " << pad << ")";
  if (x.size(2) + 2 * pad < kh || x.size(3) + 2 * pad < kw)
    TVM_FFI_THROW(ValueError) << op << ": kernel " << kh << "x" << kw << " larger than padded input";
  const int64_t oh = (x.size(2) + 2 * pad - kh) / stride + 1, ow = (x.size(3) + 2 * pad - kw) / stride + 1;
  expect_shape(op, "out", out, {x.size(0), out.size(1), oh, ow});
  if (bias.has_value()) {
    a.bias = data<const float>(op, "bias", *bias, 1, a.device);
    expect_shape(op, "bias", *bias, {out.size(1)});
  }
  if (residual.has_value()) {
    a.res = data<const float>(op, "residual", *residual, 4, a.device);
    expect_shape(op, "residual", *residual, {x.size(0), out.size(1), oh, ow});
  }
  return a;
}
}  // namespace

void conv2d_csr(TensorView x, TensorView indptr, TensorView indices, TensorView values,
                Optional<TensorView> bias, Optional<TensorView> residual, int64_t kh, int64_t kw,
                int64_t stride, int64_t pad, int64_t act, TensorView out) {
  const char* op = "st_deploy.cuda_conv2d_csr";
  ConvArgs a = conv_args(op, x, bias, residual, kh, kw, stride, pad, act, out);
  const int32_t* ip = data<const int32_t>(op, "indptr", indptr, 1, a.device);
  const int32_t* ix = data<const int32_t>(op, "indices", indices, 1, a.device);
  const float* v = data<const float>(op, "values", values, 1, a.device);
  check_rc(st_cuda_conv2d_csr(&a.s, a.x, ip, indptr.size(0), ix, indices.size(0), v, values.size(0),
                              a.bias, a.res, a.out, a.device, stream_of(a.device)));
}

void conv2d_bsr(TensorView x, TensorView indptr, TensorView indices, TensorView values,
                Optional<TensorView> bias, Optional<TensorView> residual, int64_t kh, int64_t kw,
                int64_t stride, int64_t pad, int64_t act, int64_t block_rows, TensorView out) {
  const char* op = "st_deploy.cuda_conv2d_bsr";
  if (block_rows != 4)
    TVM_FFI_THROW(ValueError) << op << ": only 4x1 blocks (block_rows = 4) are implemented, got "
                              << block_rows;
  ConvArgs a = conv_args(op, x, bias, residual, kh, kw, stride, pad, act, out);
  const int32_t* ip = data<const int32_t>(op, "indptr", indptr, 1, a.device);
  const int32_t* ix = data<const int32_t>(op, "indices", indices, 1, a.device);
  const float* v = data<const float>(op, "values", values, -1, a.device);
  if (!(values.ndim() == 1 || (values.ndim() == 2 && values.size(1) == 4) ||
        (values.ndim() == 3 && values.size(1) == 4 && values.size(2) == 1)))
    TVM_FFI_THROW(ValueError) << op << ": values must be (nnzb * 4,), (nnzb, 4) or (nnzb, 4, 1), got "
                              << shape_str(values);
  check_rc(st_cuda_conv2d_bsr4x1(&a.s, a.x, ip, indptr.size(0), ix, indices.size(0), v,
                                 values.numel(), a.bias, a.res, a.out, a.device,
                                 stream_of(a.device)));
}

void dwconv2d(TensorView x, TensorView weight, Optional<TensorView> bias,
              Optional<TensorView> residual, int64_t stride, int64_t pad, int64_t act, TensorView out) {
  const char* op = "st_deploy.cuda_dwconv2d";
  const int device = cuda_device(op, x);
  const float* w = data<const float>(op, "weight", weight, 4, device);
  const int64_t k = weight.size(2);
  expect_shape(op, "weight", weight, {x.size(1), 1, k, k});
  ConvArgs a = conv_args(op, x, bias, residual, k, k, stride, pad, act, out);
  check_rc(st_cuda_dwconv2d_dense(&a.s, a.x, w, a.bias, a.res, a.out, a.device, stream_of(a.device)));
}

void dwconv2d_csr(TensorView x, TensorView indptr, TensorView indices, TensorView values,
                  Optional<TensorView> bias, Optional<TensorView> residual, int64_t k,
                  int64_t stride, int64_t pad, int64_t act, TensorView out) {
  const char* op = "st_deploy.cuda_dwconv2d_csr";
  ConvArgs a = conv_args(op, x, bias, residual, k, k, stride, pad, act, out);
  const int32_t* ip = data<const int32_t>(op, "indptr", indptr, 1, a.device);
  const int32_t* ix = data<const int32_t>(op, "indices", indices, 1, a.device);
  const float* v = data<const float>(op, "values", values, 1, a.device);
  check_rc(st_cuda_dwconv2d_csr(&a.s, a.x, ip, indptr.size(0), ix, indices.size(0), v,
                                values.size(0), a.bias, a.res, a.out, a.device, stream_of(a.device)));
}

void linear_csr(TensorView x, TensorView indptr, TensorView indices, TensorView values,
                Optional<TensorView> bias, int64_t act, TensorView out) {
  const char* op = "st_deploy.cuda_linear_csr";
  const int device = cuda_device(op, x);
  const float* xp = data<const float>(op, "x", x, 2, device);
  float* o = data<float>(op, "out", out, 2, device);
  expect_shape(op, "out", out, {x.size(0), out.size(1)});
  const float* b = nullptr;
  if (bias.has_value()) {
    b = data<const float>(op, "bias", *bias, 1, device);
    expect_shape(op, "bias", *bias, {out.size(1)});
  }
  const int32_t* ip = data<const int32_t>(op, "indptr", indptr, 1, device);
  const int32_t* ix = data<const int32_t>(op, "indices", indices, 1, device);
  const float* v = data<const float>(op, "values", values, 1, device);
  check_rc(st_cuda_linear_csr(to_i32(op, "batch", x.size(0)), to_i32(op, "in_features", x.size(1)),
                              to_i32(op, "out_features", out.size(1)), xp, ip, indptr.size(0), ix,
                              indices.size(0), v, values.size(0), b, to_i32(op, "act", act), o,
                              device, stream_of(device)));
}

// Same arguments as st_deploy.linear_dense: W dense [out_features, in_features].
void linear_dense(TensorView x, TensorView weight, Optional<TensorView> bias, int64_t act,
                  TensorView out) {
  const char* op = "st_deploy.cuda_linear_dense";
  const int device = cuda_device(op, x);
  const float* xp = data<const float>(op, "x", x, 2, device);
  float* o = data<float>(op, "out", out, 2, device);
  const float* w = data<const float>(op, "weight", weight, 2, device);
  expect_shape(op, "weight", weight, {out.size(1), x.size(1)});
  expect_shape(op, "out", out, {x.size(0), out.size(1)});
  const float* b = nullptr;
  if (bias.has_value()) {
    b = data<const float>(op, "bias", *bias, 1, device);
    expect_shape(op, "bias", *bias, {out.size(1)});
  }
  check_rc(st_cuda_linear_dense(to_i32(op, "batch", x.size(0)), to_i32(op, "in_features", x.size(1)),
                                to_i32(op, "out_features", out.size(1)), xp, w,
                                weight.size(0) * weight.size(1), b, to_i32(op, "act", act), o,
                                device, stream_of(device)));
}

// Same arguments as st_deploy.validate_sparse, with the pattern on a CUDA device (copied to the
// host and checked there; synchronizes the device's current stream).
void validate_sparse(TensorView indptr, TensorView indices, int64_t rows, int64_t cols,
                     int64_t block_rows, int64_t values_len) {
  const char* op = "st_deploy.cuda_validate_sparse";
  if (indptr.device().device_type != kDLCUDA)
    TVM_FFI_THROW(ValueError) << op << ": indptr must be on a CUDA device";
  const int device = indptr.device().device_id;
  const int32_t* ip = data<const int32_t>(op, "indptr", indptr, 1, device);
  const int32_t* ix = data<const int32_t>(op, "indices", indices, 1, device);
  check_rc(st_cuda_validate_sparse(to_i32(op, "rows", rows), to_i32(op, "cols", cols),
                                   to_i32(op, "block_rows", block_rows), ip, indptr.size(0), ix,
                                   indices.size(0), values_len, device, stream_of(device)));
}

// Synchronizes the device and raises if a kernel recorded a malformed pattern since the last
// call that reported one (or the device reported an asynchronous error).
void check(int64_t device_id) {
  check_rc(st_cuda_check(to_i32("st_deploy.cuda_check", "device_id", device_id), nullptr));
}

bool error_pending() { return st_cuda_error_pending() != 0; }
}  // namespace st_ffi_cuda

TVM_FFI_DLL_EXPORT_TYPED_FUNC(cuda_conv2d_csr, st_ffi_cuda::conv2d_csr);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(cuda_conv2d_bsr, st_ffi_cuda::conv2d_bsr);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(cuda_dwconv2d, st_ffi_cuda::dwconv2d);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(cuda_dwconv2d_csr, st_ffi_cuda::dwconv2d_csr);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(cuda_linear_csr, st_ffi_cuda::linear_csr);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(cuda_linear_dense, st_ffi_cuda::linear_dense);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(cuda_validate_sparse, st_ffi_cuda::validate_sparse);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(cuda_check, st_ffi_cuda::check);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(cuda_error_pending, st_ffi_cuda::error_pending);

#ifndef ST_KERNELS_FFI_NO_GLOBALS
TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::GlobalDef()
      .def("st_deploy.cuda_conv2d_csr", st_ffi_cuda::conv2d_csr)
      .def("st_deploy.cuda_conv2d_bsr", st_ffi_cuda::conv2d_bsr)
      .def("st_deploy.cuda_dwconv2d", st_ffi_cuda::dwconv2d)
      .def("st_deploy.cuda_dwconv2d_csr", st_ffi_cuda::dwconv2d_csr)
      .def("st_deploy.cuda_linear_csr", st_ffi_cuda::linear_csr)
      .def("st_deploy.cuda_linear_dense", st_ffi_cuda::linear_dense)
      .def("st_deploy.cuda_validate_sparse", st_ffi_cuda::validate_sparse)
      .def("st_deploy.cuda_check", st_ffi_cuda::check);
}
#endif
