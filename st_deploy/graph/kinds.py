"""Layer kinds: the one classification of conv/linear layers every stage asks.

conv1x1 | conv | dw | grouped | linear | general. The planner prices formats per kind, the
exporters pick a kernel family per kind, the compaction passes ask is_depthwise; none of them
classifies layers on its own (as Torch-Pruning's ops.module2type).
"""

from __future__ import annotations

from .ir import Graph, Node, is_layer, pair

KINDS = ("conv1x1", "conv", "dw", "grouped", "linear", "general")

__all__ = ["KINDS", "format_of", "is_conv", "is_depthwise", "is_layer", "is_linear", "layer_kind", "mixes_channels",
           "planned", "sparse_formats"]


def is_conv(n: Node) -> bool:
    return n.op == "conv2d"


def is_linear(n: Node) -> bool:
    return n.op == "linear"


def is_depthwise(n: Node) -> bool:
    """A conv with groups = in = out channels > 1, whatever its geometry (layer_kind calls the ones
    a kernel takes "dw", a dilated one "general")."""
    g = n.attrs.get("groups", 1) if n.op == "conv2d" else 1
    w = n.params.get("weight")
    return g > 1 and w is not None and w.shape[1] == 1 and g == w.shape[0]


def mixes_channels(n: Node) -> bool:
    """A linear layer or a groups=1 conv: every output channel reads every input channel."""
    return n.op == "linear" or (n.op == "conv2d" and n.attrs.get("groups", 1) == 1)


def layer_kind(n: Node) -> str:
    """conv1x1 | conv | dw | grouped | linear, or general: a conv whose geometry no sparse kernel
    takes (dilation, a non-square kernel, stride or padding that differ per axis)."""
    w = n.params["weight"]
    if is_linear(n):
        return "linear"
    if (w.shape[2] != w.shape[3] or len({*pair(n.attrs["stride"])}) != 1 or len({*pair(n.attrs["padding"])}) != 1
            or pair(n.attrs.get("dilation", 1)) != (1, 1)):
        return "general"
    g = n.attrs["groups"]
    if g == 1:
        return "conv1x1" if w.shape[2] == 1 else "conv"
    if is_depthwise(n):
        return "dw"
    return "grouped"


def sparse_formats(kind: str, backend: str = "onnx") -> tuple[str, ...]:
    """The sparse formats st_kernels runs for a layer kind (st_kernels.h) in `backend` ("onnx" or
    "tvm"): the ORT op runs a bsr4x1 linear layer as a 1x1 conv of a 1x1 input, a TVM artifact has
    only linear_csr."""
    if kind == "linear" and backend != "onnx":
        return ("csr",)
    if kind in ("conv1x1", "conv", "linear"):
        return ("csr", "bsr4x1")
    if kind in ("dw", "grouped"):  # a grouped conv runs as a groups=1 conv with a block-diagonal CSR weight
        return ("csr",)
    return ()


def planned(graph: Graph, formats: dict[str, str]) -> Graph:
    """A copy of `graph` whose conv/linear nodes carry their format (attrs["format"]): the planned
    graph the exporters take. formats: {layer name: format} (Plan.formats()); missing layers: dense.
    Parameters are shared with `graph` (no stage edits a tensor in place)."""
    chosen = dict(formats)
    out = Graph([Node(n.name, n.op, list(n.inputs), dict(n.attrs), n.params) for n in graph.nodes],
                list(graph.inputs), list(graph.outputs))
    for n in out.nodes:
        if is_layer(n):
            n.attrs["format"] = chosen.get(n.name, "dense")
    return out


def format_of(n: Node) -> str:
    """The format the plan gave a conv/linear node of a planned graph."""
    return n.attrs.get("format", "dense")
