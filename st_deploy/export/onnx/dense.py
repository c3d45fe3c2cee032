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
import torch
from onnx import TensorProto, helper, numpy_helper

from ...graph.ir import Graph, Node, pair
from ...graph.opaque import onnx_bytes

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
        if kind == "sigmoid":
            return self.add("Sigmoid", [x], out, f"{name}/sigmoid")
        if kind == "hsigmoid":  # relu6(x + 3) / 6 == clip(x / 6 + 1 / 2, 0, 1)
            return self.add("HardSigmoid", [x], out, f"{name}/hsigmoid", alpha=1.0 / 6.0, beta=0.5)
        if kind == "tanh":
            return self.add("Tanh", [x], out, f"{name}/tanh")
        if kind == "gelu":  # opset 17 has no Gelu: x * (1 + erf(x / sqrt 2)) / 2, the form ORT's GeluFusion matches
            e = self.add("Div", [x, self.const([1.4142135381698608])], f"{name}/scaled", f"{name}/scaled")
            e = self.add("Erf", [e], f"{name}/erf", f"{name}/erf")
            e = self.add("Add", [e, self.const([1.0])], f"{name}/erf1", f"{name}/erf1")
            e = self.add("Mul", [x, e], f"{name}/xerf", f"{name}/xerf")
            return self.add("Mul", [e, self.const([0.5])], out, f"{name}/gelu")
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
    (ph, pw), d = pair(n.attrs["padding"]), list(pair(n.attrs.get("dilation", 1)))
    ins = [n.inputs[0], b.init(f"{n.name}.weight", w), b.init(f"{n.name}.bias", n.params["bias"].numpy())]
    out = n.name if act == "none" else f"{n.name}/conv"
    b.add("Conv", ins, out, n.name, kernel_shape=list(w.shape[2:]), strides=list(pair(n.attrs["stride"])),
          pads=[ph, pw, ph, pw], group=n.attrs["groups"], **({"dilations": d} if d != [1, 1] else {}))
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
    if rank == 4:
        # As an inference BatchNormalization (mean 0, var 1, epsilon 0: exactly x * scale + shift), which
        # ORT fuses into a neighbouring conv or runs blocked; Mul + Add cost two passes and reorders
        # (pre-activation BN of DenseNet: 0.91x of a plain export's speed).
        c = b.shapes[n.inputs[0]][1]
        scale = n.params["scale"] if "scale" in n.params else torch.ones(c)
        ins = [n.inputs[0], b.init(f"{n.name}.scale", scale.numpy().astype(np.float32)),
               b.init(f"{n.name}.shift", n.params["shift"].numpy().astype(np.float32)),
               b.const([0.0] * c), b.const([1.0] * c)]
        b.add("BatchNormalization", ins, n.name, n.name, epsilon=0.0)
        return
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
    if n.attrs.get("keepdim"):
        b.add("GlobalAveragePool", [n.inputs[0]], n.name, n.name)
        return
    pooled = b.add("GlobalAveragePool", [n.inputs[0]], f"{n.name}/pool", f"{n.name}/pool")
    b.add("Flatten", [pooled], n.name, f"{n.name}/flatten", axis=1)


def _pool(b: OnnxBuilder, n: Node) -> None:
    a = n.attrs
    (ph, pw) = a["padding"]
    common = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=[ph, pw, ph, pw],
                  ceil_mode=int(a.get("ceil_mode", False)))
    if a["mode"] == "max":
        b.add("MaxPool", [n.inputs[0]], n.name, n.name, **common)
    else:
        b.add("AveragePool", [n.inputs[0]], n.name, n.name, count_include_pad=int(a.get("count_include_pad", True)),
              **common)


def _adaptive_avg_pool(b: OnnxBuilder, n: Node) -> None:
    """ONNX has no adaptive pooling. Where the sizes divide it is one AveragePool; otherwise each
    axis is a fixed averaging matrix (row i: 1/len over torch's window i), y = A_h @ x @ A_w^T."""
    (h, w), (oh, ow) = b.shapes[n.inputs[0]][2:], n.attrs["size"]
    if h % oh == 0 and w % ow == 0:
        k = [h // oh, w // ow]
        b.add("AveragePool", [n.inputs[0]], n.name, n.name, kernel_shape=k, strides=k)
        return
    aw = b.init(f"{n.name}.aw", adaptive_matrix(w, ow).T.copy())
    ah = b.init(f"{n.name}.ah", adaptive_matrix(h, oh))
    rows = b.add("MatMul", [n.inputs[0], aw], f"{n.name}/w", f"{n.name}/w")
    b.add("MatMul", [ah, rows], n.name, n.name)


def adaptive_matrix(size: int, out: int) -> np.ndarray:
    """[out, size]: torch's adaptive average windows, start floor(i*size/out), end ceil((i+1)*size/out)."""
    a = np.zeros((out, size), dtype=np.float32)
    for i in range(out):
        s, e = (i * size) // out, -(-((i + 1) * size) // out)
        a[i, s:e] = 1.0 / (e - s)
    return a


def _mul(b: OnnxBuilder, n: Node) -> None:
    b.add("Mul", list(n.inputs), n.name, n.name)


def _flatten(b: OnnxBuilder, n: Node) -> None:
    b.add("Flatten", [n.inputs[0]], n.name, n.name, axis=1)


def _layer_norm(b: OnnxBuilder, n: Node) -> None:
    """Normalise over axis 1 (NCHW): opset 17's LayerNormalization takes trailing axes only."""
    x, p = n.inputs[0], n.name
    mean = b.add("ReduceMean", [x], f"{p}/mean", f"{p}/mean", axes=[1], keepdims=1)
    d = b.add("Sub", [x, mean], f"{p}/centred", f"{p}/centred")
    var = b.add("ReduceMean", [b.add("Mul", [d, d], f"{p}/sq", f"{p}/sq")], f"{p}/var", f"{p}/var", axes=[1],
                keepdims=1)
    std = b.add("Sqrt", [b.add("Add", [var, b.const([n.attrs["eps"]])], f"{p}/var_eps", f"{p}/var_eps")],
                f"{p}/std", f"{p}/std")
    b.add("Div", [d, std], p, p)


def _gather(b: OnnxBuilder, n: Node) -> None:
    index = b.init(f"{n.name}.index", np.array(n.attrs["index"], dtype=np.int64))
    b.add("Gather", [n.inputs[0], index], n.name, n.name, axis=1)


def _opaque(b: OnnxBuilder, n: Node) -> None:
    """Inline the node's own ONNX model, its names prefixed with the node's."""
    sub = onnx.load_from_string(onnx_bytes(n))
    rename = {f"in{k}": x for k, x in enumerate(dict.fromkeys(n.inputs))}
    rename["out"] = n.name
    rename[""] = ""

    def name(v: str) -> str:
        return rename.get(v, f"{n.name}/{v}")
    for t in sub.graph.initializer:
        t.name = name(t.name)
        b.inits.append(t)
    for node in sub.graph.node:
        node.input[:] = [name(v) for v in node.input]
        node.output[:] = [name(v) for v in node.output]
        node.name = f"{n.name}/{node.name}"
        b.nodes.append(node)


EMITTERS: dict[str, Callable[[OnnxBuilder, Node], None]] = {
    "conv2d": _conv, "linear": _linear, "act": _act, "add": _add, "scale_shift": _scale_shift,
    "resize": _resize, "concat": _concat, "global_avg_pool": _global_avg_pool, "pool": _pool,
    "adaptive_avg_pool": _adaptive_avg_pool, "mul": _mul, "flatten": _flatten, "layer_norm": _layer_norm,
    "gather": _gather, "opaque": _opaque,
}


def dense_model(graph: Graph, shapes: dict[str, tuple[int, ...]], doc: str = "") -> onnx.ModelProto:
    b = OnnxBuilder(graph, shapes)
    for n in graph.nodes:
        b.emit(n)
    return b.model(doc)
