"""The sparse model: conv/linear nodes planned sparse become st.sparse::SparseConv.

SparseConv (domain st.sparse, version 1; kernels/ort/ implements it on st_kernels):
  inputs   X [N, C, H, W] (or [N, C] for a linear layer), indptr int32, indices int32,
           values float32, bias float32 [O], residual (optional, the output's shape)
  output   Y = act(conv(X) + bias) + residual
  attrs    format ("csr" | "bsr4x1" | "dwcsr"), in_channels, out_channels, kernel_shape [k, k],
           strides [s, s], pads [p, p, p, p], group (1, or C for depthwise), activation
           ("none" | "relu" | "relu6" | "swish" | "hswish")

Bias and activation are always fused, and an `add` that is the only reader of a sparse conv's
output is folded in as the residual: ORT can no longer fuse them for us once the conv is a custom
op, and a separate Add node costs a full pass over the activations.
"""

from __future__ import annotations

import onnx

from ...graph.ir import Graph, Node, is_layer
from ...graph.kinds import is_conv, layer_kind
from ...graph.residual import residual_chains
from ...graph.sparse import encode
from .dense import OnnxBuilder

DOMAIN = "st.sparse"
DOMAIN_VERSION = 1


def _sparse_node(b: OnnxBuilder, n: Node, fmt: str, out: str, residual: str | None) -> None:
    w, mask = n.params["weight"], n.params.get("mask")
    kind = layer_kind(n)
    arrays = encode(fmt, w, mask, kind, int(n.attrs.get("groups", 1)))
    ins = [n.inputs[0], b.init(f"{n.name}.indptr", arrays.indptr), b.init(f"{n.name}.indices", arrays.indices),
           b.init(f"{n.name}.values", arrays.values), b.init(f"{n.name}.bias", n.params["bias"].numpy())]
    if residual is not None:
        ins.append(residual)
    if is_conv(n):
        k, s, p, g = w.shape[2], n.attrs["stride"], n.attrs["padding"], n.attrs["groups"]
        cin = w.shape[1] * g
        if kind == "grouped":
            g = 1  # encoded block-diagonal: a groups=1 conv
    else:
        k, s, p, g, cin = 1, 1, 0, 1, w.shape[1]
    b.add("SparseConv", ins, out, n.name, domain=DOMAIN, format=arrays.format, in_channels=int(cin),
          out_channels=int(w.shape[0]), kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p], group=int(g),
          activation=n.attrs.get("act", "none"))


def sparse_model(graph: Graph, shapes: dict[str, tuple[int, ...]], doc: str = "") -> onnx.ModelProto:
    """graph: a planned graph (st_deploy.plan.planned): each conv/linear node's attrs["format"]."""
    formats = {n.name: n.attrs.get("format", "dense") for n in graph.nodes if is_layer(n)}
    sparse = {name for name, fmt in formats.items() if fmt != "dense"}
    fusions = residual_chains(graph, lambda conv, add: conv in sparse)
    absorbed = {conv for convs, _ in fusions.values() for conv in convs}
    b = OnnxBuilder(graph, shapes)
    b.domains[DOMAIN] = DOMAIN_VERSION
    by_name = {n.name: n for n in graph.nodes}
    for n in graph.nodes:
        if n.name in absorbed:
            continue  # emitted at its add, where the residual is available
        if n.name in fusions:
            convs, others = fusions[n.name]
            acc = others[0]
            for j, x in enumerate(others[1:], 1):  # the inputs no conv absorbs, summed first
                acc = b.add("Add", [acc, x], f"{n.name}/rest{j}", f"{n.name}/rest{j}")
            for j, conv in enumerate(convs):
                out = n.name if j == len(convs) - 1 else f"{n.name}/acc{j}"
                _sparse_node(b, by_name[conv], formats[conv], out, acc)
                acc = out
        elif n.name in sparse:
            _sparse_node(b, n, formats[n.name], n.name, None)
        else:
            b.emit(n)
    return b.model(doc)
