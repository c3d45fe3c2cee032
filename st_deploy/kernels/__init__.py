"""st_deploy.kernels: sparse CPU kernels (C++ library st_kernels) for pruned CNNs.

The library (st_deploy/_lib/libst_kernels.so, built by `pip install .`) also registers tvm-ffi
globals for TVM Relax (R.call_dps_packed, output last):
  st_deploy.conv2d_csr(x, indptr, indices, values, bias?, residual?, kh, kw, stride, pad, act, out)
  st_deploy.conv2d_bsr(x, indptr, indices, values, bias?, residual?, kh, kw, stride, pad, act, 4, out)
  st_deploy.dwconv2d(x, weight, bias?, residual?, stride, pad, act, out)
  st_deploy.dwconv2d_csr(x, indptr, indices, values, bias?, residual?, k, stride, pad, act, out)
  st_deploy.linear_csr(x, indptr, indices, values, bias?, act, out)
  st_deploy.linear_dense(x, weight, bias?, act, out)
x/values/bias/residual/out float32, indptr/indices int32, act 0 none / 1 relu / 2 relu6;
epilogue out = act(conv + bias) (+ residual, after act).
"""

from ._lib import KernelError, library_path, load
from ..graph.sparse import bsr4x1_fill, to_bsr4x1, to_csr
from .layers import FORMATS, SparseConv2d, SparseLinear
from .ops import (ACTS, activate, aligned_empty, conv2d_bsr4x1, conv2d_csr, dwconv2d, dwconv2d_csr,
                  linear_csr, linear_dense, validate_sparse)
from .runtime import (CONV1X1_PATHS, ISAS, available_isas, conv1x1_path, get_num_threads, get_spin_us, isa,
                      isa_available, set_conv1x1_path, set_isa, set_num_threads, set_spin_us,
                      use_conv1x1_path, use_isa, variants)

__all__ = [
    "ACTS", "CONV1X1_PATHS", "FORMATS", "ISAS", "KernelError", "SparseConv2d", "SparseLinear",
    "activate", "aligned_empty", "available_isas", "bsr4x1_fill", "conv1x1_path", "conv2d_bsr4x1", "conv2d_csr",
    "dwconv2d", "dwconv2d_csr", "get_num_threads", "get_spin_us", "isa", "isa_available", "library_path",
    "linear_csr", "linear_dense", "load", "set_conv1x1_path", "set_isa", "set_num_threads", "set_spin_us", "to_bsr4x1",
    "to_csr", "use_conv1x1_path", "use_isa", "validate_sparse", "variants",
]
