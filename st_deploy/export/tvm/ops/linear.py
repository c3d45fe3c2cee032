"""linear_csr: fully connected layers; dense ones run it with every weight listed."""

from __future__ import annotations

from typing import Any

from tvm import relax

from .weights import full_csr, sparse_arrays


def unsupported(node: Any) -> str | None:
    return None


def lower(call: Any) -> tuple[Any, str]:
    assert call.residual is None, "linear_csr has no residual input"
    n = call.node
    w = n.params["weight"].detach().cpu().numpy()
    if call.fmt == "dense":
        arrays, impl = full_csr(w), "linear_csr (full density)"
    elif call.fmt == "csr":
        arrays, impl = sparse_arrays(w, "csr"), "linear_csr"
    else:
        raise AssertionError(f"{n.name}: linear layers have no {call.fmt!r} kernel")
    args = [call.x, *(relax.const(a) for a in arrays), relax.const(n.params["bias"].detach().cpu().numpy()),
            relax.prim_value(call.act)]
    out_ty = relax.TensorType(call.out_shape, "float32")
    return relax.call_dps_packed(call.prefix + "linear_csr", args, out_ty=out_ty), impl
