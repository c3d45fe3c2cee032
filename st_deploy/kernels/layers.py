"""Layer objects: convert a dense masked weight once, validate once, then run many times."""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from .ops import (act_code, aligned_empty, conv2d_bsr4x1, conv2d_csr, conv_out_hw, dwconv2d, dwconv2d_csr, linear_csr, linear_dense, validate_sparse)
from ._lib import KernelError, load
from ..graph.sparse import to_bsr4x1, to_csr

FORMATS = ("csr", "bsr4x1", "dense")


def _pair(v: Union[int, tuple[int, ...], list[int]], name: str) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(int(i) for i in v)) != 1:
            raise KernelError(f"{name} {tuple(v)}: only equal values for height and width are supported")
        return int(v[0])
    return int(v)


def to_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float32)


def _plain(a: Any) -> bool:
    return type(a) is np.ndarray and a.dtype == np.float32 and a.flags.c_contiguous


class SparseConv2d:
    """A conv layer (groups = 1 or depthwise) in one of FORMATS, built by from_dense().

    Calling it runs out = act(conv(x) + bias) (+ residual after act) with the st_deploy kernels.
    """

    def __init__(self, *, fmt: str, kind: str, in_channels: int, out_channels: int,
                 kernel_size: int, stride: int, padding: int, act: str,
                 bias: Optional[np.ndarray], arrays: tuple[np.ndarray, ...], nnz: int) -> None:
        self.fmt = fmt
        self.kind = kind  # graph.kinds vocabulary: "conv1x1" or "conv" (groups = 1), or "dw"
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.act = act
        self.bias = bias
        self.arrays = arrays
        self.nnz = nnz
        k2 = kernel_size * kernel_size
        dense = out_channels * k2 * (1 if kind == "dw" else in_channels)
        self.density = nnz / dense
        self._bound: Optional[tuple[Any, tuple[Any, ...], tuple[int, ...]]] = None
        self._out_shapes: dict[tuple[int, ...], tuple[int, int, int, int]] = {}
        # groups = 1 layers: one kernel plan (checked and arranged once) per input height x width.
        self._plans: dict[tuple[int, int], Any] = {}

    @classmethod
    def from_dense(cls, weight: Any, bias: Any = None, stride: Union[int, tuple[int, int]] = 1,
                   padding: Union[int, tuple[int, int]] = 0, groups: int = 1,
                   act: str = "none", fmt: str = "csr") -> "SparseConv2d":
        """weight [cout, cin/groups, k, k] with pruned entries at 0 (numpy or torch).

        groups = 1 takes fmt "csr" or "bsr4x1"; groups = cin = cout (depthwise) takes "dense" or
        "csr" (per-channel live taps). Raises KernelError for anything the kernels cannot run.
        """
        if fmt not in FORMATS:
            raise KernelError(f"unknown format {fmt!r}: use one of {FORMATS}")
        act_code(act)
        w = to_numpy(weight)
        if w.ndim != 4 or w.shape[2] != w.shape[3]:
            raise KernelError(f"weight must be [cout, cin/groups, k, k] with a square kernel, got {w.shape}")
        cout, cin_g, k, _ = (int(s) for s in w.shape)
        s, p = _pair(stride, "stride"), _pair(padding, "padding")
        b = None if bias is None else to_numpy(bias).reshape(-1)
        if b is not None and b.shape[0] != cout:
            raise KernelError(f"bias has {b.shape[0]} entries for {cout} output channels")
        common = dict(out_channels=cout, kernel_size=k, stride=s, padding=p, act=act, bias=b)
        nnz = int(np.count_nonzero(w))
        # A 1-channel depthwise conv is also a groups=1 conv; "dense" only exists as depthwise.
        depthwise = groups == cout and cin_g == 1 and (groups > 1 or fmt == "dense")
        if groups == 1 and not depthwise:
            if fmt == "dense":
                raise KernelError("a dense groups=1 conv has no st_deploy kernel: keep it in the "
                                  "ONNX/TVM graph or choose fmt='csr' or 'bsr4x1'")
            w2 = w.reshape(cout, -1)
            arrays = to_csr(w2) if fmt == "csr" else to_bsr4x1(w2)
            validate_sparse(arrays[0], arrays[1], cout, w2.shape[1], 1 if fmt == "csr" else 4,
                                arrays[2].size)
            kind = "conv1x1" if k == 1 else "conv"
            return cls(fmt=fmt, kind=kind, in_channels=cin_g, arrays=arrays, nnz=nnz, **common)
        if depthwise:
            if fmt == "bsr4x1":
                raise KernelError("depthwise convs take fmt='dense' or 'csr', not 'bsr4x1'")
            if fmt == "dense":
                arrays = (np.ascontiguousarray(w),)
            else:
                arrays = to_csr(w.reshape(cout, k * k))
                validate_sparse(arrays[0], arrays[1], cout, k * k, 1, arrays[2].size)
            return cls(fmt=fmt, kind="dw", in_channels=cout, arrays=arrays, nnz=nnz, **common)
        raise KernelError(f"groups={groups} with weight {w.shape}: only groups=1 and depthwise "
                          f"(groups = in = out channels) are supported")

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        n, _, h, w = x_shape
        oh, ow = conv_out_hw(h, w, self.kernel_size, self.kernel_size, self.stride, self.padding)
        return (n, self.out_channels, oh, ow)

    def _bind(self) -> tuple[Any, tuple[Any, ...], tuple[int, ...]]:
        """The kernel function, the weight arrays as tvm-ffi tensors and the integer arguments.

        Built at the first call (the library loads lazily); passing numpy weights costs a DLPack
        conversion per array on every call, which is most of a small layer's time. groups = 1
        layers run through a kernel plan per input size instead (_plan): checked, turned into
        input offsets and arranged for the kernel once, not on every call.
        """
        import tvm_ffi

        act = act_code(self.act)
        k, s, p = self.kernel_size, self.stride, self.padding
        if self.kind == "dw" and self.fmt == "dense":
            name, ints = "dwconv2d", (s, p, act)
        elif self.kind == "dw":
            name, ints = "dwconv2d_csr", (k, s, p, act)
        else:  # through a plan per input size (_plan); the weights live in the plan
            name, ints = "conv2d_plan_run", ()
        consts = () if self.kind != "dw" else tuple(tvm_ffi.from_dlpack(np.ascontiguousarray(a))
                                                      for a in self.arrays)
        bias = None if self.bias is None else tvm_ffi.from_dlpack(np.ascontiguousarray(self.bias, "float32"))
        return getattr(load(), name), consts + (bias,), ints

    def _plan(self, h: int, w: int) -> Any:
        plan = self._plans.get((h, w))
        if plan is None:
            if len(self._plans) >= 8:  # a stream of new sizes must not grow without bound
                self._plans.clear()
            k = self.kernel_size
            block = 1 if self.fmt == "csr" else 4
            plan = load().conv2d_plan(*self.arrays, block, self.in_channels, h, w, self.out_channels,
                                      k, k, self.stride, self.padding, act_code(self.act))
            self._plans[(h, w)] = plan
        return plan

    def _fast_call(self, x: np.ndarray, residual: Optional[np.ndarray], out: Optional[np.ndarray]) -> np.ndarray:
        if self._bound is None:
            self._bound = self._bind()
        fn, consts, ints = self._bound
        if out is None:
            shape = self._out_shapes.get(x.shape)
            if shape is None:
                shape = self._out_shapes[x.shape] = self.output_shape(x.shape)
            out = aligned_empty(shape)
        try:
            if self.kind != "dw":
                fn(self._plan(x.shape[2], x.shape[3]), x, consts[-1], residual, out)
            else:
                fn(x, *consts, residual, *ints, out)
        except ValueError as e:
            raise KernelError(str(e).strip()) from None
        return out

    def __call__(self, x: Any, residual: Any = None, out: Any = None) -> Any:
        # numpy float32 C-contiguous arguments go straight to the kernel; anything else (torch,
        # other dtypes, views) takes the converting path of ops.
        if (_plain(x) and x.ndim == 4 and (residual is None or _plain(residual))
                and (out is None or _plain(out))):
            return self._fast_call(x, residual, out)
        kw = dict(stride=self.stride, padding=self.padding, act=self.act, out=out)
        if self.kind == "dw":
            if self.fmt == "dense":
                return dwconv2d(x, self.arrays[0], self.bias, residual, **kw)
            return dwconv2d_csr(x, *self.arrays, self.bias, residual,
                                    kernel_size=self.kernel_size, **kw)
        fn = conv2d_csr if self.fmt == "csr" else conv2d_bsr4x1
        return fn(x, *self.arrays, self.bias, residual, out_channels=self.out_channels,
                  kernel_size=self.kernel_size, **kw)

    def __repr__(self) -> str:
        return (f"SparseConv2d({self.kind}, {self.in_channels}->{self.out_channels}, k={self.kernel_size}, "
                f"s={self.stride}, p={self.padding}, act={self.act}, fmt={self.fmt}, "
                f"density={self.density:.3f})")


class SparseLinear:
    """A linear layer y = act(x @ W.T + b) with W in CSR (fmt "csr") or kept dense (fmt "dense":
    every weight, no index array), built by from_dense()."""

    def __init__(self, arrays: tuple[np.ndarray, ...], in_features: int, out_features: int,
                 bias: Optional[np.ndarray], act: str, fmt: str = "csr") -> None:
        self.arrays = arrays
        self.in_features = in_features
        self.out_features = out_features
        self.bias = bias
        self.act = act
        self.fmt = fmt
        self.nnz = int(arrays[1].size) if fmt == "csr" else int(np.count_nonzero(arrays[0]))
        self.density = self.nnz / (in_features * out_features)

    @classmethod
    def from_dense(cls, weight: Any, bias: Any = None, act: str = "none", fmt: str = "csr") -> "SparseLinear":
        act_code(act)
        if fmt not in ("csr", "dense"):
            raise KernelError(f"linear format {fmt!r}: use 'csr' or 'dense'")
        w = to_numpy(weight)
        if w.ndim != 2:
            raise KernelError(f"linear weight must be [out_features, in_features], got {w.shape}")
        b = None if bias is None else to_numpy(bias).reshape(-1)
        if b is not None and b.shape[0] != w.shape[0]:
            raise KernelError(f"bias has {b.shape[0]} entries for {w.shape[0]} output features")
        if fmt == "dense":
            return cls((np.ascontiguousarray(w, dtype=np.float32),), int(w.shape[1]), int(w.shape[0]), b, act, fmt)
        arrays = to_csr(w)
        validate_sparse(arrays[0], arrays[1], w.shape[0], w.shape[1], 1, arrays[2].size)
        return cls(arrays, int(w.shape[1]), int(w.shape[0]), b, act)

    def __call__(self, x: Any, out: Any = None) -> Any:
        if self.fmt == "dense":
            return linear_dense(x, self.arrays[0], self.bias, act=self.act, out=out)
        return linear_csr(x, *self.arrays, self.bias, out_features=self.out_features,
                              act=self.act, out=out)
