"""dwconv2d / dwconv2d_csr: depthwise convolutions (groups = in = out channels).

dense runs the kernels' dense depthwise op; csr lists each channel's live taps (tap id ky*k+kx),
which is a row-per-channel CSR of weight.reshape(C, k*k).
"""

from __future__ import annotations

from typing import Any

from tvm import relax

from .conv2d import conv_geometry, unsupported  # noqa: F401  (same geometry limits as conv2d)
from .weights import kernel_arrays


def lower(call: Any) -> tuple[Any, str]:
    n = call.node
    w = n.params["weight"].detach().cpu().numpy()
    stride, pad = conv_geometry(n)
    k = int(w.shape[2])
    bias = relax.const(n.params["bias"].detach().cpu().numpy())
    res = call.residual if call.residual is not None else relax.op.null_value()
    tail = [relax.prim_value(stride), relax.prim_value(pad), relax.prim_value(call.act)]
    out_ty = relax.TensorType(call.out_shape, "float32")
    if call.fmt == "dense":
        args = [call.x, relax.const(w), bias, res, *tail]
        return relax.call_dps_packed(call.prefix + "dwconv2d", args, out_ty=out_ty), "dwconv2d"
    if call.fmt == "csr":
        arrays = kernel_arrays(n, "csr")
        args = [call.x, *(relax.const(a) for a in arrays), bias, res, relax.prim_value(k), *tail]
        return relax.call_dps_packed(call.prefix + "dwconv2d_csr", args, out_ty=out_ty), "dwconv2d_csr"
    raise AssertionError(f"{n.name}: depthwise layers have no {call.fmt!r} kernel")
