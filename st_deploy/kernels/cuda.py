"""st_deploy.kernels.cuda: the sparse kernels on NVIDIA GPUs, for torch CUDA tensors.

The library (st_deploy/_lib/libst_kernels_cuda.so, built by `pip install .` when nvcc is found, or
$ST_KERNELS_CUDA_LIB) also registers tvm-ffi globals for TVM Relax, with the argument lists of the
CPU ones (see st_deploy.kernels) and every tensor on one CUDA device:
  st_deploy.cuda_conv2d_csr / cuda_conv2d_bsr / cuda_dwconv2d / cuda_dwconv2d_csr / cuda_linear_csr /
  cuda_linear_dense,
  st_deploy.cuda_validate_sparse(indptr, indices, rows, cols, block_rows, values_len),
  st_deploy.cuda_check(device_id).

Calls are asynchronous and run on torch's current stream (tvm_ffi passes it along with the
tensors; TVM passes its own). The kernels never read out of bounds on a malformed sparse pattern:
they skip the bad entries and record the fault, which the next call (or check()) raises as
KernelError. Layers (SparseConv2dCUDA, SparseLinearCUDA) validate their pattern once, on creation.

This module imports only the standard library at import time (torch and tvm_ffi when used), and
can be loaded on its own from its file (the GPU tests and benchmarks do that on machines where the
rest of st_deploy's dependencies are missing).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Union

try:
    from ._lib import KernelError
except ImportError:  # loaded from its file, outside the st_deploy package
    class KernelError(ValueError):  # type: ignore[no-redef]
        """A kernel call was given inconsistent arguments (shapes, dtypes, a malformed layer)."""


def _package_module(name: str) -> Any:
    """st_deploy.graph.<name> (vocabulary: standard library only; sparse: torch), imported as a
    package module, or loaded from its file when this module was loaded from its own file."""
    if __package__:
        return importlib.import_module(f"st_deploy.graph.{name}")
    key = f"st_deploy_graph_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(__file__).resolve().parents[1] / "graph" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[key]


LIB_NAME = "libst_kernels_cuda.so"
# Points at a development build (e.g. build/st_kernels_cuda/libst_kernels_cuda.so).
ENV_LIB = "ST_KERNELS_CUDA_LIB"
_VOCABULARY = _package_module("vocabulary")
ACTS = {a: _VOCABULARY.ACT_CODES[a] for a in _VOCABULARY.EPILOGUE_ACTS}  # what the CUDA epilogues apply
FORMATS = ("csr", "bsr4x1", "dense")
SYMBOLS = ("cuda_conv2d_csr", "cuda_conv2d_bsr", "cuda_dwconv2d", "cuda_dwconv2d_csr",
           "cuda_linear_csr", "cuda_linear_dense", "cuda_validate_sparse", "cuda_check")


def library_path() -> Path:
    """$ST_KERNELS_CUDA_LIB, else the installed copy in st_deploy/_lib."""
    env = os.environ.get(ENV_LIB)
    if env:
        return Path(env)
    try:
        from st_deploy.runtime.libpath import candidates
        found = candidates(LIB_NAME)
    except ImportError:
        found = [Path(__file__).resolve().parents[1] / "_lib" / LIB_NAME]
    return next((p for p in found if p.is_file()), found[0])


@lru_cache(maxsize=1)
def load() -> Any:
    """The tvm-ffi module of libst_kernels_cuda.so (loading it registers "st_deploy.cuda_*")."""
    path = library_path()
    if not path.is_file():
        hint = ("build it with nvcc on PATH (`pip install .`, or cmake -S kernels -B build "
                "-DST_KERNELS_CUDA=ON)" if shutil.which("nvcc") else "no nvcc was found on this machine")
        raise RuntimeError(f"st_deploy CUDA kernel library not found at {path}: {hint}, or set "
                           f"{ENV_LIB} to a built {LIB_NAME}")
    import tvm_ffi

    try:
        return tvm_ffi.load_module(str(path))
    except Exception as e:
        raise RuntimeError(f"cannot load the CUDA kernel library {path}: {e}") from e


def available() -> tuple[bool, str]:
    """(True, "") when the CUDA kernels can run here, else (False, why not)."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "no CUDA device (torch.cuda.is_available() is False)"
    try:
        load()
    except Exception as e:  # missing library, tvm_ffi missing, foreign build
        return False, str(e)
    return True, ""


def call(name: str, *args: Any) -> Any:
    """Calls a library function; argument and malformed-pattern errors become KernelError."""
    fn = getattr(load(), name)
    try:
        return fn(*args)
    except ValueError as e:
        raise KernelError(str(e).strip()) from None


def check(device: Any = None) -> None:
    """Synchronizes the device and raises KernelError if a kernel met a malformed pattern."""
    import torch

    dev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    call("cuda_check", int(dev.index if dev.index is not None else torch.cuda.current_device()))


def error_pending() -> bool:
    """True if a kernel recorded a malformed-pattern fault that no call has reported yet (no sync)."""
    return bool(load().cuda_error_pending())


def act_code(act: Union[str, int, None]) -> int:
    if act is None:
        return 0
    if isinstance(act, int) and act in ACTS.values():
        return act
    if isinstance(act, str) and act.lower() in ACTS:
        return ACTS[act.lower()]
    raise KernelError(f"unknown activation {act!r}: use one of {sorted(ACTS)}")


def _dev(t: Any, name: str, dtype: Any, device: Any = None) -> Any:
    """Contiguous CUDA tensor of `dtype` (on `device` when given; a copy only when needed)."""
    import torch

    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t)
    t = t.detach()
    if device is None:
        if t.device.type != "cuda":
            raise KernelError(f"{name} is on {t.device}; the CUDA kernels take CUDA tensors")
    elif t.device != device:
        t = t.to(device)
    if t.dtype != dtype:
        t = t.to(dtype)
    return t.contiguous()


def conv_out_hw(h: int, w: int, kh: int, kw: int, stride: int, pad: int) -> tuple[int, int]:
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    if oh < 1 or ow < 1 or h + 2 * pad < kh or w + 2 * pad < kw:
        raise KernelError(f"kernel {kh}x{kw} with padding {pad} does not fit a {h}x{w} input")
    return oh, ow


def _kernel_hw(kernel_size: Union[int, tuple[int, int]]) -> tuple[int, int]:
    if isinstance(kernel_size, int):
        return kernel_size, kernel_size
    kh, kw = kernel_size
    return int(kh), int(kw)


def _x4(x: Any) -> Any:
    import torch

    x = _dev(x, "x", torch.float32)
    if x.dim() != 4:
        raise KernelError(f"x must be NCHW (4 dims), got shape {tuple(x.shape)}")
    return x


def _pattern(x: Any, indptr: Any, indices: Any, values: Any, bias: Any, residual: Any) -> list:
    import torch

    d = x.device
    return [_dev(indptr, "indptr", torch.int32, d), _dev(indices, "indices", torch.int32, d),
            _dev(values, "values", torch.float32, d), _dev(bias, "bias", torch.float32, d),
            _dev(residual, "residual", torch.float32, d)]


def conv2d_csr(x: Any, indptr: Any, indices: Any, values: Any, bias: Any = None,
               residual: Any = None, *, out_channels: int, kernel_size: Union[int, tuple[int, int]],
               stride: int = 1, padding: int = 0, act: Union[str, int] = "none",
               out: Any = None) -> Any:
    """Sparse conv (groups=1), CSR over weight.reshape(cout, -1), on CUDA tensors."""
    return _conv_sparse("cuda_conv2d_csr", x, indptr, indices, values, bias, residual, out_channels,
                        kernel_size, stride, padding, act, out)


def conv2d_bsr4x1(x: Any, indptr: Any, indices: Any, values: Any, bias: Any = None,
                  residual: Any = None, *, out_channels: int,
                  kernel_size: Union[int, tuple[int, int]], stride: int = 1, padding: int = 0,
                  act: Union[str, int] = "none", out: Any = None) -> Any:
    """Sparse conv, 4x1 blocks: indptr[ceil(cout/4)+1], indices[nnzb], values[nnzb, 4]."""
    return _conv_sparse("cuda_conv2d_bsr", x, indptr, indices, values, bias, residual, out_channels,
                        kernel_size, stride, padding, act, out)


def _conv_sparse(fn: str, x: Any, indptr: Any, indices: Any, values: Any, bias: Any,
                 residual: Any, cout: int, kernel_size: Union[int, tuple[int, int]], stride: int,
                 padding: int, act: Union[str, int], out: Any) -> Any:
    import torch

    x = _x4(x)
    kh, kw = _kernel_hw(kernel_size)
    oh, ow = conv_out_hw(x.shape[2], x.shape[3], kh, kw, stride, padding)
    if out is None:
        out = torch.empty((x.shape[0], int(cout), oh, ow), dtype=torch.float32, device=x.device)
    args = [x, *_pattern(x, indptr, indices, values, bias, residual), kh, kw, int(stride),
            int(padding), act_code(act)]
    if fn == "cuda_conv2d_bsr":
        args.append(4)
    call(fn, *args, out)
    return out


def dwconv2d(x: Any, weight: Any, bias: Any = None, residual: Any = None, *, stride: int = 1,
             padding: Optional[int] = None, act: Union[str, int] = "none", out: Any = None) -> Any:
    """Dense depthwise conv, weight [C, 1, k, k]; padding defaults to (k - 1) // 2."""
    import torch

    x = _x4(x)
    weight = _dev(weight, "weight", torch.float32, x.device)
    if weight.dim() != 4:
        raise KernelError(f"depthwise weight must be [C, 1, k, k], got shape {tuple(weight.shape)}")
    k = int(weight.shape[2])
    pad = (k - 1) // 2 if padding is None else int(padding)
    oh, ow = conv_out_hw(x.shape[2], x.shape[3], k, k, stride, pad)
    if out is None:
        out = torch.empty((x.shape[0], x.shape[1], oh, ow), dtype=torch.float32, device=x.device)
    call("cuda_dwconv2d", x, weight, _dev(bias, "bias", torch.float32, x.device),
         _dev(residual, "residual", torch.float32, x.device), int(stride), pad, act_code(act), out)
    return out


def dwconv2d_csr(x: Any, indptr: Any, indices: Any, values: Any, bias: Any = None,
                 residual: Any = None, *, kernel_size: int, stride: int = 1,
                 padding: Optional[int] = None, act: Union[str, int] = "none",
                 out: Any = None) -> Any:
    """Sparse depthwise conv: channel c's live taps (ky * k + kx) are indices[indptr[c]:indptr[c+1]]."""
    import torch

    x = _x4(x)
    k = int(kernel_size)
    pad = (k - 1) // 2 if padding is None else int(padding)
    oh, ow = conv_out_hw(x.shape[2], x.shape[3], k, k, stride, pad)
    if out is None:
        out = torch.empty((x.shape[0], x.shape[1], oh, ow), dtype=torch.float32, device=x.device)
    call("cuda_dwconv2d_csr", x, *_pattern(x, indptr, indices, values, bias, residual), k,
         int(stride), pad, act_code(act), out)
    return out


def linear_csr(x: Any, indptr: Any, indices: Any, values: Any, bias: Any = None, *,
               out_features: int, act: Union[str, int] = "none", out: Any = None) -> Any:
    """y = act(x @ W.T + bias) with W [out_features, in_features] in CSR; x is [N, in_features]."""
    import torch

    x = _dev(x, "x", torch.float32)
    if x.dim() != 2:
        raise KernelError(f"x must be [N, in_features], got shape {tuple(x.shape)}")
    if out is None:
        out = torch.empty((x.shape[0], int(out_features)), dtype=torch.float32, device=x.device)
    ip, ix, v, b, _ = _pattern(x, indptr, indices, values, bias, None)
    call("cuda_linear_csr", x, ip, ix, v, b, act_code(act), out)
    return out


def linear_dense(x: Any, weight: Any, bias: Any = None, *, act: Union[str, int] = "none",
                 out: Any = None) -> Any:
    """y = act(x @ W.T + bias) with a dense W [out_features, in_features]; x is [N, in_features]."""
    import torch

    x = _dev(x, "x", torch.float32)
    if x.dim() != 2:
        raise KernelError(f"x must be [N, in_features], got shape {tuple(x.shape)}")
    w = _dev(weight, "weight", torch.float32, x.device)
    if w.dim() != 2:
        raise KernelError(f"weight must be [out_features, in_features], got shape {tuple(w.shape)}")
    if out is None:
        out = torch.empty((x.shape[0], int(w.shape[0])), dtype=torch.float32, device=x.device)
    call("cuda_linear_dense", x, w, _dev(bias, "bias", torch.float32, x.device), act_code(act), out)
    return out


def validate_sparse(indptr: Any, indices: Any, rows: int, cols: int, block_rows: int = 1,
                    values_len: Optional[int] = None) -> None:
    """Raises KernelError unless the CUDA (indptr, indices) is a valid CSR / BSR pattern."""
    import torch

    indptr = _dev(indptr, "indptr", torch.int32)
    indices = _dev(indices, "indices", torch.int32, indptr.device)
    n = int(indices.shape[0]) * block_rows if values_len is None else int(values_len)
    call("cuda_validate_sparse", indptr, indices, int(rows), int(cols), int(block_rows), n)


def to_csr(w2: Any) -> tuple[Any, Any, Any]:
    """CSR of a 2-D CUDA tensor's nonzeros, on its device (st_deploy.graph.sparse, the one encoder)."""
    return _package_module("sparse").to_csr(w2)


def to_bsr4x1(w2: Any) -> tuple[Any, Any, Any]:
    """BSR 4x1 of a 2-D CUDA tensor's nonzeros, values [nnzb, 4], on its device (st_deploy.graph.sparse)."""
    return _package_module("sparse").to_bsr4x1(w2)


def _pair(v: Union[int, tuple[int, ...], list[int]], name: str) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(int(i) for i in v)) != 1:
            raise KernelError(f"{name} {tuple(v)}: only equal values for height and width are supported")
        return int(v[0])
    return int(v)


class SparseConv2dCUDA:
    """A conv layer (groups = 1 or depthwise) on a CUDA device, in one of FORMATS.

    from_dense() converts the masked weight once, copies it to the device and validates the pattern
    there once; calling the layer runs out = act(conv(x) + bias) (+ residual after act).
    """

    def __init__(self, *, fmt: str, kind: str, in_channels: int, out_channels: int,
                 kernel_size: int, stride: int, padding: int, act: str, bias: Any,
                 arrays: tuple, nnz: int) -> None:
        self.fmt, self.kind = fmt, kind
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.act = kernel_size, stride, padding, act
        self.bias, self.arrays, self.nnz = bias, arrays, nnz
        k2 = kernel_size * kernel_size
        self.density = nnz / (out_channels * k2 * (1 if kind == "dw" else in_channels))

    @property
    def device(self) -> Any:
        return self.arrays[0].device

    @classmethod
    def from_dense(cls, weight: Any, bias: Any = None, stride: Union[int, tuple[int, int]] = 1,
                   padding: Union[int, tuple[int, int]] = 0, groups: int = 1, act: str = "none",
                   fmt: str = "csr", device: Any = "cuda") -> "SparseConv2dCUDA":
        """weight [cout, cin/groups, k, k] with pruned entries at 0 (torch or numpy).

        groups = 1 takes fmt "csr" or "bsr4x1"; depthwise (groups = cin = cout) "dense" or "csr".
        """
        import torch

        if fmt not in FORMATS:
            raise KernelError(f"unknown format {fmt!r}: use one of {FORMATS}")
        act_code(act)
        dev = torch.device(device)
        w = torch.as_tensor(weight).detach().to(device=dev, dtype=torch.float32)
        if w.dim() != 4 or w.shape[2] != w.shape[3]:
            raise KernelError(f"weight must be [cout, cin/groups, k, k] with a square kernel, got "
                              f"{tuple(w.shape)}")
        cout, cin_g, k, _ = (int(s) for s in w.shape)
        s, p = _pair(stride, "stride"), _pair(padding, "padding")
        b = None
        if bias is not None:
            b = torch.as_tensor(bias).detach().to(device=dev, dtype=torch.float32).reshape(-1).contiguous()
            if b.shape[0] != cout:
                raise KernelError(f"bias has {b.shape[0]} entries for {cout} output channels")
        common = dict(out_channels=cout, kernel_size=k, stride=s, padding=p, act=act, bias=b)
        nnz = int((w != 0).sum())
        depthwise = groups == cout and cin_g == 1 and (groups > 1 or fmt == "dense")
        if groups == 1 and not depthwise:
            if fmt == "dense":
                raise KernelError("a dense groups=1 conv has no st_deploy kernel: use fmt='csr' or "
                                  "'bsr4x1' (or torch's conv)")
            w2 = w.reshape(cout, -1)
            arrays = to_csr(w2) if fmt == "csr" else to_bsr4x1(w2)
            validate_sparse(arrays[0], arrays[1], cout, w2.shape[1], 1 if fmt == "csr" else 4,
                            arrays[2].numel())
            kind = "conv1x1" if k == 1 else "conv"
            return cls(fmt=fmt, kind=kind, in_channels=cin_g, arrays=arrays, nnz=nnz, **common)
        if depthwise:
            if fmt == "bsr4x1":
                raise KernelError("depthwise convs take fmt='dense' or 'csr', not 'bsr4x1'")
            if fmt == "dense":
                arrays = (w.contiguous(),)
            else:
                arrays = to_csr(w.reshape(cout, k * k))
                validate_sparse(arrays[0], arrays[1], cout, k * k, 1, arrays[2].numel())
            return cls(fmt=fmt, kind="dw", in_channels=cout, arrays=arrays, nnz=nnz, **common)
        raise KernelError(f"groups={groups} with weight {tuple(w.shape)}: only groups=1 and "
                          f"depthwise (groups = in = out channels) are supported")

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        n, _, h, w = x_shape
        oh, ow = conv_out_hw(h, w, self.kernel_size, self.kernel_size, self.stride, self.padding)
        return (n, self.out_channels, oh, ow)

    def __call__(self, x: Any, residual: Any = None, out: Any = None) -> Any:
        kw = dict(stride=self.stride, padding=self.padding, act=self.act, out=out)
        if self.kind == "dw":
            if self.fmt == "dense":
                return dwconv2d(x, self.arrays[0], self.bias, residual, **kw)
            return dwconv2d_csr(x, *self.arrays, self.bias, residual, kernel_size=self.kernel_size, **kw)
        fn = conv2d_csr if self.fmt == "csr" else conv2d_bsr4x1
        return fn(x, *self.arrays, self.bias, residual, out_channels=self.out_channels,
                  kernel_size=self.kernel_size, **kw)

    def __repr__(self) -> str:
        return (f"SparseConv2dCUDA({self.kind}, {self.in_channels}->{self.out_channels}, "
                f"k={self.kernel_size}, s={self.stride}, p={self.padding}, act={self.act}, "
                f"fmt={self.fmt}, density={self.density:.3f}, device={self.device})")


class SparseLinearCUDA:
    """y = act(x @ W.T + b) on a CUDA device with W in CSR (fmt "csr") or kept dense (fmt "dense":
    every weight, no index array), built by from_dense()."""

    def __init__(self, arrays: tuple, in_features: int, out_features: int, bias: Any,
                 act: str, fmt: str = "csr") -> None:
        self.arrays, self.in_features, self.out_features = arrays, in_features, out_features
        self.bias, self.act, self.fmt = bias, act, fmt
        self.nnz = int(arrays[1].numel()) if fmt == "csr" else int(arrays[0].count_nonzero())
        self.density = self.nnz / (in_features * out_features)

    @classmethod
    def from_dense(cls, weight: Any, bias: Any = None, act: str = "none", device: Any = "cuda",
                   fmt: str = "csr") -> "SparseLinearCUDA":
        import torch

        act_code(act)
        if fmt not in ("csr", "dense"):
            raise KernelError(f"linear format {fmt!r}: use 'csr' or 'dense'")
        dev = torch.device(device)
        w = torch.as_tensor(weight).detach().to(device=dev, dtype=torch.float32)
        if w.dim() != 2:
            raise KernelError(f"linear weight must be [out_features, in_features], got {tuple(w.shape)}")
        b = None
        if bias is not None:
            b = torch.as_tensor(bias).detach().to(device=dev, dtype=torch.float32).reshape(-1).contiguous()
            if b.shape[0] != w.shape[0]:
                raise KernelError(f"bias has {b.shape[0]} entries for {w.shape[0]} output features")
        if fmt == "dense":
            return cls((w.contiguous(),), int(w.shape[1]), int(w.shape[0]), b, act, fmt)
        arrays = to_csr(w)
        validate_sparse(arrays[0], arrays[1], w.shape[0], w.shape[1], 1, arrays[2].numel())
        return cls(arrays, int(w.shape[1]), int(w.shape[0]), b, act)

    def __call__(self, x: Any, out: Any = None) -> Any:
        if self.fmt == "dense":
            return linear_dense(x, self.arrays[0], self.bias, act=self.act, out=out)
        return linear_csr(x, *self.arrays, self.bias, out_features=self.out_features, act=self.act,
                          out=out)


__all__ = ["ACTS", "ENV_LIB", "FORMATS", "KernelError", "LIB_NAME", "SparseConv2dCUDA",
           "SparseLinearCUDA", "available", "check", "conv2d_bsr4x1", "conv2d_csr", "dwconv2d",
           "dwconv2d_csr", "error_pending", "library_path", "linear_csr", "linear_dense", "load",
           "to_bsr4x1", "to_csr", "validate_sparse"]
