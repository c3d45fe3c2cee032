"""linear_csr / linear_dense: fully connected layers, sparse ones in CSR, dense ones with every
weight and no index array (cuda_linear_dense on cuda)."""

from __future__ import annotations

from typing import Any

import numpy as np
from tvm import relax

from .weights import kernel_arrays


def unsupported(node: Any) -> str | None:
    return None


def lower(call: Any) -> tuple[Any, str]:
    assert call.residual is None, "linear kernels have no residual input"
    n = call.node
    w = n.params["weight"].detach().cpu().numpy()
    bias = relax.const(n.params["bias"].detach().cpu().numpy())
    out_ty = relax.TensorType(call.out_shape, "float32")
    if call.fmt == "dense":
        args = [call.x, relax.const(np.ascontiguousarray(w, dtype=np.float32)), bias, relax.prim_value(call.act)]
        return relax.call_dps_packed(call.prefix + "linear_dense", args, out_ty=out_ty), "linear_dense"
    if call.fmt == "csr":
        arrays, impl = kernel_arrays(n, "csr"), "linear_csr"
    else:
        raise AssertionError(f"{n.name}: linear layers have no {call.fmt!r} kernel")
    args = [call.x, *(relax.const(a) for a in arrays), bias, relax.prim_value(call.act)]
    return relax.call_dps_packed(call.prefix + "linear_csr", args, out_ty=out_ty), impl
