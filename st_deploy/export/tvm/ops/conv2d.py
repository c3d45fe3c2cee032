"""conv2d_csr / conv2d_bsr: groups=1 convolutions (and grouped ones as block-diagonal CSR).

Formats: csr / bsr4x1 store the mask's live entries (st_deploy.graph.sparse); dense stores every weight in 4x1 blocks, the
fastest full-density layout the kernels have (measured against full CSR: 1.2-2.8x faster on the
example's 1x1 convs). A grouped conv (1 < groups < channels) is a groups=1 conv whose weight is
zero outside its diagonal blocks: CSR listing each row's own group is exact and does only the
grouped conv's multiply-adds.
"""

from __future__ import annotations

from typing import Any

from tvm import relax

from .weights import kernel_arrays


def conv_geometry(node: Any) -> tuple[int, int] | str:
    """(stride, pad) as the kernels take them (one int each), or why the layer does not fit."""
    def one(v: Any, what: str) -> int | str:
        vals = list(v) if isinstance(v, (list, tuple)) else [v]
        if len(set(int(a) for a in vals)) != 1:
            return f"{what} {tuple(vals)} differs per axis (kernels take one value)"
        return int(vals[0])
    s, p = one(node.attrs["stride"], "stride"), one(node.attrs["padding"], "padding")
    for v in (s, p):
        if isinstance(v, str):
            return v
    if node.attrs.get("dilation", 1) not in (1, (1, 1), [1, 1]):
        return "dilated convolution"
    return int(s), int(p)


def unsupported(node: Any) -> str | None:
    g = conv_geometry(node)
    if isinstance(g, str):
        return g
    w = node.params["weight"]
    if w.shape[2] != w.shape[3]:
        return f"non-square kernel {tuple(w.shape[2:])}"
    return None


def lower(call: Any) -> tuple[Any, str]:
    n = call.node
    w = n.params["weight"].detach().cpu().numpy()
    groups = int(n.attrs["groups"])
    stride, pad = conv_geometry(n)
    if groups > 1 and call.fmt == "csr":  # the mask's live entries of the block-diagonal weight
        name, arrays = "conv2d_csr", kernel_arrays(n, "csr")
        impl = f"conv2d_csr (block-diagonal, {groups} groups, sparse)"
    elif groups > 1:
        assert call.fmt == "dense", "the planner gives grouped convs dense or csr"
        name, arrays = "conv2d_csr", kernel_arrays(n, "csr", every_entry=True)
        impl = f"conv2d_csr (block-diagonal, {groups} groups)"
    elif call.fmt == "dense":
        name, arrays = "conv2d_bsr", kernel_arrays(n, "bsr4x1", every_entry=True)
        impl = "conv2d_bsr (4x1 blocks, full density)"
    elif call.fmt == "csr":
        name, arrays, impl = "conv2d_csr", kernel_arrays(n, "csr"), "conv2d_csr"
    elif call.fmt == "bsr4x1":
        name, arrays, impl = "conv2d_bsr", kernel_arrays(n, "bsr4x1"), "conv2d_bsr (4x1 blocks)"
    else:
        raise AssertionError(f"{n.name}: unknown format {call.fmt!r}")
    bias = n.params["bias"].detach().cpu().numpy()
    args = [call.x, *(relax.const(a) for a in arrays), relax.const(bias),
            call.residual if call.residual is not None else relax.op.null_value(),
            relax.prim_value(int(w.shape[2])), relax.prim_value(int(w.shape[3])), relax.prim_value(stride),
            relax.prim_value(pad), relax.prim_value(call.act)]
    if name == "conv2d_bsr":
        args.append(relax.prim_value(4))  # block rows: only 4x1 blocks exist
    return relax.call_dps_packed(call.prefix + name, args, out_ty=relax.TensorType(call.out_shape, "float32")), impl
