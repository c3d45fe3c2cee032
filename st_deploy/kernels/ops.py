"""Functional API: one call per kernel, on numpy arrays or torch CPU tensors.

Inputs are made contiguous float32 / int32 (a copy only when needed); the result has the kind of
`x` (numpy in, numpy out; torch in, torch out) and is written to `out` when given. Every call
checks shapes and the sparse pattern in C++ and raises KernelError (a DeployError and ValueError)
on a fault. Epilogue of the conv ops: out = act(conv + bias) (+ residual, added after act).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from ..graph.vocabulary import ACT_CODES, EPILOGUE_ACTS
from ._lib import KernelError, call

try:  # torch is a dependency of st_deploy, but the kernels work on numpy alone
    import torch
except ImportError:  # pragma: no cover
    torch = None

Array = Any  # numpy.ndarray or torch.Tensor
ACTS = {k: ACT_CODES[k] for k in EPILOGUE_ACTS}  # what the conv/linear epilogues apply


def act_code(act: Union[str, int, None]) -> int:
    if act is None:
        return 0
    if isinstance(act, int) and act in ACTS.values():
        return act
    if isinstance(act, str) and act.lower() in ACTS:
        return ACTS[act.lower()]
    raise KernelError(f"unknown activation {act!r}: use one of {sorted(ACTS)}")


def _is_torch(a: Any) -> bool:
    return torch is not None and isinstance(a, torch.Tensor)


def as_dtype(a: Array, dtype: str, name: str) -> Array:
    """Contiguous CPU array of `dtype` ("float32"/"int32"), same kind as `a` (lists -> numpy)."""
    if a is None:
        return None
    if _is_torch(a):
        if a.device.type != "cpu":
            raise KernelError(f"{name} is on {a.device}; the st_deploy kernels run on the CPU")
        t = a.detach()
        want = torch.float32 if dtype == "float32" else torch.int32
        if t.dtype != want:
            t = t.to(want)
        return t.contiguous()
    return np.ascontiguousarray(np.asarray(a), dtype=dtype)


def aligned_empty(shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
    """Uninitialised numpy array whose data starts on a 64-byte boundary (full cache lines)."""
    dt = np.dtype(dtype)
    n = 1
    for d in shape:
        n *= int(d)
    raw = np.empty(n * dt.itemsize + 64, dtype=np.uint8)
    # __array_interface__ rather than .ctypes: this runs on every layer call without `out`.
    start = (-raw.__array_interface__["data"][0]) % 64
    return raw[start : start + n * dt.itemsize].view(dt).reshape(shape)


def _new_out(like: Array, shape: tuple[int, ...]) -> Array:
    if _is_torch(like):
        return torch.empty(shape, dtype=torch.float32)
    return aligned_empty(shape)


def conv_out_hw(h: int, w: int, kh: int, kw: int, stride: int, pad: int) -> tuple[int, int]:
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    if oh < 1 or ow < 1:
        raise KernelError(f"kernel {kh}x{kw} with padding {pad} does not fit a {h}x{w} input")
    return oh, ow


def _x4(x: Array) -> Array:
    x = as_dtype(x, "float32", "x")
    if x.ndim != 4:
        raise KernelError(f"x must be NCHW (4 dims), got shape {tuple(x.shape)}")
    return x


def _kernel_hw(kernel_size: Union[int, tuple[int, int]]) -> tuple[int, int]:
    if isinstance(kernel_size, int):
        return kernel_size, kernel_size
    kh, kw = kernel_size
    return int(kh), int(kw)


def conv2d_csr(x: Array, indptr: Array, indices: Array, values: Array, bias: Optional[Array] = None,
               residual: Optional[Array] = None, *, out_channels: int,
               kernel_size: Union[int, tuple[int, int]], stride: int = 1, padding: int = 0,
               act: Union[str, int] = "none", out: Optional[Array] = None) -> Array:
    """Sparse conv (groups=1), CSR over weight.reshape(cout, -1): indptr[cout+1], indices, values."""
    return _conv_sparse("conv2d_csr", x, indptr, indices, values, bias, residual, out_channels,
                        kernel_size, stride, padding, act, out)


def conv2d_bsr4x1(x: Array, indptr: Array, indices: Array, values: Array,
                  bias: Optional[Array] = None, residual: Optional[Array] = None, *,
                  out_channels: int, kernel_size: Union[int, tuple[int, int]], stride: int = 1,
                  padding: int = 0, act: Union[str, int] = "none",
                  out: Optional[Array] = None) -> Array:
    """Sparse conv, 4x1 blocks: indptr[ceil(cout/4)+1], indices[nnzb], values[nnzb, 4]."""
    return _conv_sparse("conv2d_bsr", x, indptr, indices, values, bias, residual, out_channels,
                        kernel_size, stride, padding, act, out)


def _conv_sparse(fn: str, x: Array, indptr: Array, indices: Array, values: Array,
                 bias: Optional[Array], residual: Optional[Array], cout: int,
                 kernel_size: Union[int, tuple[int, int]], stride: int, padding: int,
                 act: Union[str, int], out: Optional[Array]) -> Array:
    x = _x4(x)
    kh, kw = _kernel_hw(kernel_size)
    oh, ow = conv_out_hw(x.shape[2], x.shape[3], kh, kw, stride, padding)
    if out is None:
        out = _new_out(x, (x.shape[0], int(cout), oh, ow))
    args = [x, as_dtype(indptr, "int32", "indptr"), as_dtype(indices, "int32", "indices"),
            as_dtype(values, "float32", "values"), as_dtype(bias, "float32", "bias"),
            as_dtype(residual, "float32", "residual"), kh, kw, int(stride), int(padding),
            act_code(act)]
    if fn == "conv2d_bsr":
        args.append(4)
    call(fn, *args, out)
    return out


def dwconv2d(x: Array, weight: Array, bias: Optional[Array] = None,
             residual: Optional[Array] = None, *, stride: int = 1, padding: Optional[int] = None,
             act: Union[str, int] = "none", out: Optional[Array] = None) -> Array:
    """Dense depthwise conv, weight [C, 1, k, k]; padding defaults to (k - 1) // 2."""
    x = _x4(x)
    weight = as_dtype(weight, "float32", "weight")
    if weight.ndim != 4:
        raise KernelError(f"depthwise weight must be [C, 1, k, k], got shape {tuple(weight.shape)}")
    k = int(weight.shape[2])
    pad = (k - 1) // 2 if padding is None else int(padding)
    oh, ow = conv_out_hw(x.shape[2], x.shape[3], k, k, stride, pad)
    if out is None:
        out = _new_out(x, (x.shape[0], x.shape[1], oh, ow))
    call("dwconv2d", x, weight, as_dtype(bias, "float32", "bias"),
         as_dtype(residual, "float32", "residual"), int(stride), pad, act_code(act), out)
    return out


def dwconv2d_csr(x: Array, indptr: Array, indices: Array, values: Array,
                 bias: Optional[Array] = None, residual: Optional[Array] = None, *,
                 kernel_size: int, stride: int = 1, padding: Optional[int] = None,
                 act: Union[str, int] = "none", out: Optional[Array] = None) -> Array:
    """Sparse depthwise conv: channel c's live taps (ky * k + kx) are indices[indptr[c]:indptr[c+1]]."""
    x = _x4(x)
    k = int(kernel_size)
    pad = (k - 1) // 2 if padding is None else int(padding)
    oh, ow = conv_out_hw(x.shape[2], x.shape[3], k, k, stride, pad)
    if out is None:
        out = _new_out(x, (x.shape[0], x.shape[1], oh, ow))
    call("dwconv2d_csr", x, as_dtype(indptr, "int32", "indptr"), as_dtype(indices, "int32", "indices"),
         as_dtype(values, "float32", "values"), as_dtype(bias, "float32", "bias"),
         as_dtype(residual, "float32", "residual"), k, int(stride), pad, act_code(act), out)
    return out


def linear_csr(x: Array, indptr: Array, indices: Array, values: Array,
               bias: Optional[Array] = None, *, out_features: int,
               act: Union[str, int] = "none", out: Optional[Array] = None) -> Array:
    """y = act(x @ W.T + bias) with W [out_features, in_features] in CSR; x is [N, in_features]."""
    x = as_dtype(x, "float32", "x")
    if x.ndim != 2:
        raise KernelError(f"x must be [N, in_features], got shape {tuple(x.shape)}")
    if out is None:
        out = _new_out(x, (x.shape[0], int(out_features)))
    call("linear_csr", x, as_dtype(indptr, "int32", "indptr"), as_dtype(indices, "int32", "indices"),
         as_dtype(values, "float32", "values"), as_dtype(bias, "float32", "bias"), act_code(act), out)
    return out


def linear_dense(x: Array, weight: Array, bias: Optional[Array] = None, *,
                 act: Union[str, int] = "none", out: Optional[Array] = None) -> Array:
    """y = act(x @ W.T + bias) with a dense W [out_features, in_features]; x is [N, in_features]."""
    x = as_dtype(x, "float32", "x")
    weight = as_dtype(weight, "float32", "weight")
    if x.ndim != 2:
        raise KernelError(f"x must be [N, in_features], got shape {tuple(x.shape)}")
    if weight.ndim != 2:
        raise KernelError(f"weight must be [out_features, in_features], got shape {tuple(weight.shape)}")
    if out is None:
        out = _new_out(x, (x.shape[0], int(weight.shape[0])))
    call("linear_dense", x, weight, as_dtype(bias, "float32", "bias"), act_code(act), out)
    return out


def activate(x: Array, act: str, residual: Optional[Array] = None, out: Optional[Array] = None) -> Array:
    """out = act(x) (+ residual) elementwise, for every activation kind (graph.vocabulary.ACT_CODES),
    vectorised; out may be x."""
    if act not in ACT_CODES:
        raise KernelError(f"unknown activation {act!r}: use one of {sorted(ACT_CODES)}")
    x = as_dtype(x, "float32", "x")
    if out is None:
        out = _new_out(x, tuple(x.shape))
    call("activate", x, as_dtype(residual, "float32", "residual"), ACT_CODES[act], out)
    return out


def validate_sparse(indptr: Array, indices: Array, rows: int, cols: int, block_rows: int = 1,
                    values_len: Optional[int] = None) -> None:
    """Raises KernelError unless (indptr, indices) is a valid CSR / BSR(block_rows x 1) pattern."""
    indptr = as_dtype(indptr, "int32", "indptr")
    indices = as_dtype(indices, "int32", "indices")
    n = int(indices.shape[0]) * block_rows if values_len is None else int(values_len)
    call("validate_sparse", indptr, indices, int(rows), int(cols), int(block_rows), n)
