"""Graph -> ONNX with standard ops only (opset 17), one emitter per IR op.

Each emitter appends ONNX nodes that compute the IR node's output under the same tensor name,
so sparse_ops can swap single conv/linear nodes without touching the rest. Numerics follow the
torch executor (graph/module.py): nearest resize is floor-asymmetric like F.interpolate's
'nearest', bilinear is half_pixel like align_corners=False.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...graph.ir import Graph, Node

OPSET = 17
ONNX_IR_VERSION = 8  # onnxruntime >= 1.14 reads IR 8; opset 17 needs >= 8


class OnnxBuilder:
    """Collects nodes and initializers; `shapes` holds every tensor's batch-1 shape."""

    def __init__(self, graph: Graph, shapes: dict[str, tuple[int, ...]]) -> None:
        self.graph = graph
        self.shapes = shapes
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._consts: dict[tuple, str] = {}
        self.domains: dict[str, int] = {"": OPSET}

    # -- helpers -------------------------------------------------------------------------
    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, values: list, dtype: type = np.float32) -> str:
        """A shared small constant (clip bounds, resize scales)."""
        key = (tuple(values), np.dtype(dtype).str)
        if key not in self._consts:
            self._consts[key] = self.init(f"const_{len(self._consts)}", np.array(values, dtype=dtype))
        return self._consts[key]

    def add(self, op: str, inputs: list[str], output: str, name: str, domain: str = "", **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, domain=domain or None, **attrs))
        return output

    def activation(self, x: str, kind: str, out: str, name: str) -> str:
        """out = kind(x); `x` is returned unchanged for 'none' (the caller then names x `out`)."""
        if kind == "relu":
            return self.add("Relu", [x], out, f"{name}/relu")
        if kind == "relu6":
            return self.add("Clip", [x, self.const([0.0]), self.const([6.0])], out, f"{name}/relu6")
        if kind == "hswish":
            return self.add("HardSwish", [x], out, f"{name}/hswish")
        if kind == "swish":
            s = self.add("Sigmoid", [x], f"{name}/sigmoid", f"{name}/sigmoid")
            return self.add("Mul", [x, s], out, f"{name}/swish")
        assert kind == "none", kind
        return x

    # -- the model ----------------------------------------------------------------------
    def emit(self, n: Node) -> None:
        EMITTERS[n.op](self, n)

    def model(self, doc: str) -> onnx.ModelProto:
        def value_info(name: str) -> onnx.ValueInfoProto:
            return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *self.shapes[name][1:]])

        g = helper.make_graph(self.nodes, "st_deploy", [value_info(i) for i in self.graph.inputs],
                              [value_info(o) for o in self.graph.outputs], self.inits)
        opsets = [helper.make_opsetid(d, v) for d, v in self.domains.items()]
        m = helper.make_model(g, opset_imports=opsets, producer_name="st-deploy", doc_string=doc)
        m.ir_version = ONNX_IR_VERSION
        return m


def _conv(b: OnnxBuilder, n: Node) -> None:
    w = n.params["weight"].detach().numpy().astype(np.float32)
    act = n.attrs.get("act", "none")
    s, p, k = n.attrs["stride"], n.attrs["padding"], w.shape[2]
    ins = [n.inputs[0], b.init(f"{n.name}.weight", w), b.init(f"{n.name}.bias", n.params["bias"].numpy())]
    out = n.name if act == "none" else f"{n.name}/conv"
    b.add("Conv", ins, out, n.name, kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p],
          group=n.attrs["groups"])
    b.activation(out, act, n.name, n.name)


def _linear(b: OnnxBuilder, n: Node) -> None:
    act = n.attrs.get("act", "none")
    ins = [n.inputs[0], b.init(f"{n.name}.weight", n.params["weight"].detach().numpy().astype(np.float32)),
           b.init(f"{n.name}.bias", n.params["bias"].numpy())]
    out = n.name if act == "none" else f"{n.name}/gemm"
    b.add("Gemm", ins, out, n.name, transB=1)
    b.activation(out, act, n.name, n.name)


def _act(b: OnnxBuilder, n: Node) -> None:
    if n.attrs["kind"] == "none":
        b.add("Identity", [n.inputs[0]], n.name, n.name)
    else:
        b.activation(n.inputs[0], n.attrs["kind"], n.name, n.name)


def _add(b: OnnxBuilder, n: Node) -> None:
    y = n.inputs[0]
    for i, x in enumerate(n.inputs[1:], 1):
        y = b.add("Add", [y, x], n.name if i == len(n.inputs) - 1 else f"{n.name}/{i}", f"{n.name}/{i}")


def _scale_shift(b: OnnxBuilder, n: Node) -> None:
    rank = len(b.shapes[n.inputs[0]])
    view = (1, -1) + (1,) * (rank - 2)
    x = n.inputs[0]
    if "scale" in n.params:
        scale = b.init(f"{n.name}.scale", n.params["scale"].numpy().astype(np.float32).reshape(view))
        x = b.add("Mul", [x, scale], f"{n.name}/scaled", f"{n.name}/scale")
    shift = b.init(f"{n.name}.shift", n.params["shift"].numpy().astype(np.float32).reshape(view))
    b.add("Add", [x, shift], n.name, f"{n.name}/shift")


def _resize(b: OnnxBuilder, n: Node) -> None:
    if n.attrs["mode"] == "nearest":
        attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    if len(n.inputs) == 1:
        s = float(n.attrs["scale"])
        b.add("Resize", [n.inputs[0], "", b.const([1.0, 1.0, s, s])], n.name, n.name, **attrs)
        return
    # To the spatial size of the second input: sizes = shape(x)[:2] ++ shape(ref)[2:].
    nc = b.add("Shape", [n.inputs[0]], f"{n.name}/nc", f"{n.name}/nc", start=0, end=2)
    hw = b.add("Shape", [n.inputs[1]], f"{n.name}/hw", f"{n.name}/hw", start=2, end=4)
    sizes = b.add("Concat", [nc, hw], f"{n.name}/sizes", f"{n.name}/sizes", axis=0)
    b.add("Resize", [n.inputs[0], "", "", sizes], n.name, n.name, **attrs)


def _concat(b: OnnxBuilder, n: Node) -> None:
    b.add("Concat", list(n.inputs), n.name, n.name, axis=1)


def _global_avg_pool(b: OnnxBuilder, n: Node) -> None:
    pooled = b.add("GlobalAveragePool", [n.inputs[0]], f"{n.name}/pool", f"{n.name}/pool")
    b.add("Flatten", [pooled], n.name, f"{n.name}/flatten", axis=1)


EMITTERS: dict[str, Callable[[OnnxBuilder, Node], None]] = {
    "conv2d": _conv, "linear": _linear, "act": _act, "add": _add, "scale_shift": _scale_shift,
    "resize": _resize, "concat": _concat, "global_avg_pool": _global_avg_pool,
}


def dense_model(graph: Graph, shapes: dict[str, tuple[int, ...]], doc: str = "") -> onnx.ModelProto:
    b = OnnxBuilder(graph, shapes)
    for n in graph.nodes:
        b.emit(n)
    return b.model(doc)
