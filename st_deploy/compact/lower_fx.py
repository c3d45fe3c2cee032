"""Lower a generic masked model (any CNN torch.fx can trace) to a Graph.

Masks are `weight_mask` buffers on nn.Conv2d / nn.Linear whose `weight` is already
multiplied by the mask (the generic loader's contract). The model runs once on an example
input first (`_Recorder`): every fx node's shape is then known, and values that are not
tensors (sizes, ints, shape arithmetic) are taken as the constants they were.

One handler per op, looked up in three tables (modules, functions, methods). An op with no
handler is not refused: it becomes an `opaque` node (graph/opaque.py) that runs as it is and
keeps its channels whole; conv and linear layers around it are still compacted and planned.
What cannot be lowered at all (a module torch.fx cannot trace, several outputs from an
unknown op) is a DeployError naming the op and the node.

Tensors are tracked with their layout: "map" (N,C,H,W), "vec" (N,C), "nhwc" (the graph holds
N,C,H,W; the model sees it permuted to N,H,W,C, as ConvNeXt's channels-last blocks do: a
Linear there is a 1x1 conv, a LayerNorm over the last axis a layer_norm over channels), "any"
(the output of an opaque op of another rank), and "shuffle" (a map viewed as N,g,C/g,H,W,
transposed or not: viewed back it is a channel permutation).
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..errors import DeployError
from ..graph.build import GraphBuilder
from ..graph.ir import Graph
from ..graph.opaque import opaque_onnx

_ACT_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hswish", nn.SiLU: "swish",
                nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hsigmoid", nn.Tanh: "tanh"}
_ACT_FUNCS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardswish: "hswish", F.silu: "swish",
              torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.hardsigmoid: "hsigmoid", torch.tanh: "tanh",
              F.tanh: "tanh"}
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh"}
_IDENTITY_MODULES = (nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
_IDENTITY_METHODS = ("contiguous", "clone", "detach")
_NHWC, _NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def _stochastic_depth() -> Any:
    """torchvision's stochastic depth (identity in eval), when torchvision is installed."""
    try:
        from torchvision.ops import stochastic_depth
    except Exception:  # torchvision absent or not importable here: nothing to recognise
        return None
    return stochastic_depth


class _Value:
    """A traced tensor: the graph tensor it is, its layout, and its shape as the model sees it."""

    def __init__(self, name: str, layout: str, shape: tuple[int, ...]) -> None:
        self.name, self.layout, self.shape = name, layout, tuple(shape)


class _Static:
    """A value that is not a graph tensor (an int, a size, a parameter): used as a constant."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _Recorder(fx.Interpreter):
    """Runs the traced model once and keeps every node's shape, or its value when not a tensor."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[str, Any] = {}
        self.values: dict[str, Any] = {}
        self.varying: set[str] = set()  # nodes whose value depends on the input

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        # A tensor computed from parameters alone (timm's gamma.reshape(1, -1, 1, 1)) is a constant.
        if n.op == "placeholder" or any(a.name in self.varying for a in n.all_input_nodes):
            self.varying.add(n.name)
        if isinstance(out, torch.Tensor):
            self.shapes[n.name] = tuple(out.shape)
            if n.name not in self.varying:
                self.values[n.name] = out.detach()
        elif isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.Tensor) for o in out):
            self.shapes[n.name] = [tuple(o.shape) for o in out]
        elif isinstance(out, dict):
            self.shapes[n.name] = {k: tuple(v.shape) for k, v in out.items() if isinstance(v, torch.Tensor)}
        else:
            self.values[n.name] = out
        return out


def _layout_of(shape: tuple[int, ...]) -> str:
    return {4: "map", 2: "vec"}.get(len(shape), "any")


class _Lowering:
    def __init__(self, gm: fx.GraphModule, rec: _Recorder, input_shape: tuple[int, ...]) -> None:
        self.gm, self.rec = gm, rec
        self.mods = dict(gm.named_modules())
        self.b = GraphBuilder(["input"])
        self.env: dict[str, Any] = {}
        self.input_shape = tuple(input_shape)
        self.opaque: list[str] = []
        self.stochastic_depth = _stochastic_depth()

    def fail(self, node: fx.Node, what: str) -> DeployError:
        return DeployError(f"cannot compact: {what} at node {node.name!r}")

    # -- values ----------------------------------------------------------------------------
    def arg(self, a: Any) -> Any:
        """An fx argument as _Value / _Static / python structure of them."""
        if isinstance(a, fx.Node):
            return self.env[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(self.arg(x) for x in a)
        return _Static(a)

    def val(self, node: fx.Node, a: Any) -> _Value:
        v = self.arg(a)
        if not isinstance(v, _Value):
            raise _Unhandled(f"a non-tensor argument {a!r:.40}")
        return v

    def static(self, a: Any) -> Any:
        """The python value of an argument that must be constant (raises _Unhandled otherwise)."""
        v = self.arg(a)
        if isinstance(v, _Static):
            return v.value
        if isinstance(v, (list, tuple)) and all(isinstance(x, _Static) for x in v):
            return type(v)(x.value for x in v)
        raise _Unhandled("a tensor where a constant is expected")

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        return self.rec.shapes[node.name]

    def out(self, node: fx.Node, name: str, layout: str | None = None) -> _Value:
        shape = self.shape(node)
        return _Value(name, layout or _layout_of(shape), shape)

    def map_arg(self, node: fx.Node, a: Any) -> str:
        """A spatial N,C,H,W argument (conv, BN, pooling, resize read only those)."""
        v = self.val(node, a)
        if v.layout != "map":
            raise _Unhandled(f"a {v.layout} tensor where an N,C,H,W map is needed")
        return v.name

    # -- the walk ----------------------------------------------------------------------------
    def run(self) -> tuple[Graph, list[str]]:
        outputs: list[str] = []
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if self.env:
                    raise DeployError(f"cannot compact: the model takes several inputs ({node.name!r}); "
                                      f"one image tensor is supported")
                self.env[node.name] = _Value("input", "map", self.shape(node))
            elif node.op == "output":
                outputs = self.outputs(node)
            elif node.op == "get_attr" or node.name in self.rec.values:
                # Parameters, and shape arithmetic on sizes: constants at this input shape.
                self.env[node.name] = _Static(self.rec.values.get(node.name))
            else:
                self.env[node.name] = self.lower_node(node)
        return self.b.build(outputs), self.opaque

    def outputs(self, node: fx.Node) -> list[str]:
        out = node.args[0]
        items = list(out.values()) if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else [out]
        names = []
        for o in items:
            v = self.arg(o)
            if not isinstance(v, _Value) or v.layout not in ("map", "vec", "any"):
                raise self.fail(node, f"an output that is not a plain tensor ({getattr(v, 'layout', type(v).__name__)})")
            names.append(v.name)
        return names

    def lower_node(self, node: fx.Node) -> Any:
        try:
            if node.op == "call_module":
                return self.module(node, self.mods[node.target])
            if node.op == "call_function":
                return self.function(node)
            return self.method(node)
        except _Unhandled as e:
            return self.make_opaque(node, str(e))

    # -- modules -------------------------------------------------------------------------------
    def module(self, node: fx.Node, m: nn.Module) -> Any:
        name = str(node.target)
        x = node.args[0] if node.args else None
        if isinstance(m, _IDENTITY_MODULES) or (type(m).__name__ == "StochasticDepth" and not m.training):
            return self.val(node, x)
        for cls, kind in _ACT_MODULES.items():
            if type(m) is cls:
                return self.act(node, x, kind, name)
        if type(m) is nn.GELU:
            if m.approximate != "none":
                raise _Unhandled("GELU(approximate='tanh')")
            return self.act(node, x, "gelu", name)
        if isinstance(m, nn.Flatten):
            return self.flatten(node, x, m.start_dim, m.end_dim)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.adaptive_avg_pool(node, x, m.output_size, name)
        if isinstance(m, nn.MaxPool2d):
            if m.return_indices:
                raise _Unhandled("MaxPool2d(return_indices=True)")
            return self.pool(node, x, "max", m.kernel_size, m.stride, m.padding, m.ceil_mode, dilation=m.dilation,
                             name=name)
        if isinstance(m, nn.AvgPool2d):
            if m.divisor_override:
                raise _Unhandled("AvgPool2d(divisor_override)")
            return self.pool(node, x, "avg", m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                             name=name)
        if isinstance(m, nn.Linear):
            return self.linear(node, x, m.weight, m.bias, getattr(m, "weight_mask", None), name)
        if isinstance(m, nn.LayerNorm):
            return self.layer_norm(node, x, m.normalized_shape, m.weight, m.bias, m.eps, name)
        if isinstance(m, nn.Conv2d):
            return self.conv(node, x, m, name)
        if isinstance(m, nn.BatchNorm2d):
            if not m.track_running_stats or m.running_mean is None:
                raise _Unhandled(f"BatchNorm2d {name} without running statistics")
            gamma = m.weight if m.affine else torch.ones_like(m.running_mean)
            beta = m.bias if m.affine else torch.zeros_like(m.running_mean)
            xs = self.map_arg(node, x)
            return self.out(node, self.b.batch_norm(name, xs, gamma, beta, m.running_mean, m.running_var, m.eps))
        if isinstance(m, nn.Upsample):
            return self.interpolate(node, x, m.size, m.scale_factor, m.mode, m.align_corners)
        raise _Unhandled(type(m).__name__)

    # -- functions and methods -------------------------------------------------------------------
    def function(self, node: fx.Node) -> Any:
        f, args, kw = node.target, node.args, node.kwargs
        if f in _ACT_FUNCS:
            return self.act(node, args[0], _ACT_FUNCS[f], node.name)
        if f is F.gelu and kw.get("approximate", "none") == "none" and len(args) == 1:
            return self.act(node, args[0], "gelu", node.name)
        if f in (operator.add, operator.iadd, torch.add):
            if kw.get("alpha", 1) != 1:
                raise _Unhandled("add with alpha")
            return self.binary(node, "add", args[0], args[1])
        if f in (operator.mul, operator.imul, torch.mul):
            return self.binary(node, "mul", args[0], args[1])
        if f in (operator.sub, torch.sub) and isinstance(self.arg(args[1]), _Static):
            return self.binary(node, "add", args[0], -self.static(args[1]))
        if f in (operator.truediv, torch.div) and isinstance(self.arg(args[1]), _Static) and not kw:
            return self.binary(node, "mul", args[0], 1.0 / self.static(args[1]))
        if f is torch.flatten:
            return self.flatten(node, args[0], _get(args, kw, 1, "start_dim", 0), _get(args, kw, 2, "end_dim", -1))
        if f is torch.cat:
            return self.concat(node, args[0], _get(args, kw, 1, "dim", 0))
        if f is torch.mean:
            return self.mean(node, args[0], _get(args, kw, 1, "dim", None), _get(args, kw, 2, "keepdim", False))
        if f is F.adaptive_avg_pool2d:
            return self.adaptive_avg_pool(node, args[0], self.static(_get(args, kw, 1, "output_size", None)),
                                          node.name)
        if f in (F.max_pool2d, torch.max_pool2d):
            a = _bind(args, kw, ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                 "return_indices"))
            if self.static(a.get("return_indices", False)):
                raise _Unhandled("max_pool2d(return_indices=True)")
            return self.pool(node, a["input"], "max", self.static(a["kernel_size"]), self.static(a.get("stride")),
                             self.static(a.get("padding", 0)), self.static(a.get("ceil_mode", False)),
                             dilation=self.static(a.get("dilation", 1)), name=node.name)
        if f in (F.avg_pool2d, torch._C._nn.avg_pool2d):
            a = _bind(args, kw, ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                 "divisor_override"))
            if self.static(a.get("divisor_override")):
                raise _Unhandled("avg_pool2d(divisor_override)")
            return self.pool(node, a["input"], "avg", self.static(a["kernel_size"]), self.static(a.get("stride")),
                             self.static(a.get("padding", 0)), self.static(a.get("ceil_mode", False)),
                             self.static(a.get("count_include_pad", True)), name=node.name)
        if f is F.interpolate:
            a = _bind(args, kw, ("input", "size", "scale_factor", "mode", "align_corners"))
            return self.interpolate(node, a["input"], self.static(a.get("size")), self.static(a.get("scale_factor")),
                                    self.static(a.get("mode", "nearest")), self.static(a.get("align_corners")))
        if f is F.linear:  # a wrapper calling F.linear on its own weight (timm): its zeros are its mask
            a = _bind(args, kw, ("input", "weight", "bias"))
            w, bias = self.static(a["weight"]), self.static(a.get("bias"))
            return self.linear(node, a["input"], w, bias, None, node.name)
        if f is F.batch_norm:
            a = _bind(args, kw, ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum",
                                 "eps"))
            mean, var = self.static(a["running_mean"]), self.static(a["running_var"])
            if self.static(a.get("training", False)) or mean is None or var is None:
                raise _Unhandled("batch_norm in training mode or without running statistics")
            gamma, beta = self.static(a.get("weight")), self.static(a.get("bias"))
            gamma = torch.ones_like(mean) if gamma is None else gamma
            beta = torch.zeros_like(mean) if beta is None else beta
            x = self.map_arg(node, a["input"])
            return self.out(node, self.b.batch_norm(node.name, x, gamma, beta, mean, var,
                                                    float(self.static(a.get("eps", 1e-5)))))
        if f is F.layer_norm:
            a = _bind(args, kw, ("input", "normalized_shape", "weight", "bias", "eps"))
            return self.layer_norm(node, a["input"], self.static(a["normalized_shape"]),
                                   self.static(a.get("weight")), self.static(a.get("bias")),
                                   self.static(a.get("eps", 1e-5)), node.name)
        if f in (F.dropout, F.dropout2d) or (f is self.stochastic_depth and not self.static(
                _get(args, kw, 3, "training", True))):
            return self.val(node, args[0])
        if f is torch.permute:
            return self.permute(node, args[0], self.static(_get(args, kw, 1, "dims", None)))
        if f is torch.transpose:
            return self.transpose(node, args[0], self.static(args[1]), self.static(args[2]))
        if f in (torch.chunk, torch.split):
            return self.split(node, f.__name__, args[0], self.static(args[1]), self.static(_get(args, kw, 2, "dim", 0)))
        if f is operator.getitem:
            return self.getitem(node, args[0], args[1])
        raise _Unhandled(getattr(f, "__name__", str(f)))

    def method(self, node: fx.Node) -> Any:
        m, args, kw = node.target, node.args, node.kwargs
        if m in _ACT_METHODS:
            return self.act(node, args[0], _ACT_METHODS[m], node.name)
        if m in _IDENTITY_METHODS:
            return self.val(node, args[0])
        if m in ("add", "add_") and len(args) == 2 and kw.get("alpha", 1) == 1:
            return self.binary(node, "add", args[0], args[1])
        if m in ("mul", "mul_") and len(args) == 2:
            return self.binary(node, "mul", args[0], args[1])
        if m == "flatten":
            return self.flatten(node, args[0], _get(args, kw, 1, "start_dim", 0), _get(args, kw, 2, "end_dim", -1))
        if m in ("view", "reshape"):
            shape = self.static(args[1:] if len(args) > 2 or not isinstance(args[1], (list, tuple)) else args[1])
            return self.reshape(node, args[0], tuple(shape))
        if m == "mean":
            return self.mean(node, args[0], _get(args, kw, 1, "dim", None), _get(args, kw, 2, "keepdim", False))
        if m == "permute":
            dims = args[1:] if len(args) > 2 or not isinstance(args[1], (list, tuple)) else args[1]
            return self.permute(node, args[0], tuple(self.static(dims)))
        if m == "transpose":
            return self.transpose(node, args[0], self.static(args[1]), self.static(args[2]))
        if m in ("chunk", "split"):
            return self.split(node, m, args[0], self.static(args[1]), self.static(_get(args, kw, 2, "dim", 0)))
        raise _Unhandled(f"Tensor.{m}")

    # -- op helpers ------------------------------------------------------------------------------
    def act(self, node: fx.Node, a: Any, kind: str, name: str) -> _Value:
        x = self.val(node, a)
        return _Value(self.b.act(name, x.name, kind), x.layout, x.shape)

    def conv(self, node: fx.Node, a: Any, m: nn.Conv2d, name: str) -> _Value:
        x = self.map_arg(node, a)
        if m.padding_mode != "zeros":
            raise _Unhandled(f"Conv2d {name} with padding_mode {m.padding_mode!r}")
        padding = m.padding
        if isinstance(padding, str):  # 'valid' / 'same': the numbers torch used
            if padding == "valid":
                padding = (0, 0)
            elif any(d * (k - 1) % 2 for d, k in zip(m.dilation, m.kernel_size)):
                raise _Unhandled(f"Conv2d {name} with asymmetric 'same' padding")
            else:
                padding = tuple(d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size))
        return self.out(node, self.b.conv2d(name, x, m.weight, m.bias, _one(m.stride), _one(padding), m.groups,
                                            getattr(m, "weight_mask", None), dilation=_one(m.dilation)))

    def linear(self, node: fx.Node, a: Any, weight: torch.Tensor, bias: torch.Tensor | None,
               mask: torch.Tensor | None, name: str) -> _Value:
        x = self.val(node, a)
        if x.layout == "vec":
            return self.out(node, self.b.linear(name, x.name, weight, bias, mask))
        if x.layout == "nhwc":  # a Linear over channels-last features is a 1x1 conv of the map
            w4 = weight[:, :, None, None]
            m4 = None if mask is None else mask[:, :, None, None]
            return _Value(self.b.conv2d(name, x.name, w4, bias, 1, 0, 1, m4), "nhwc", self.shape(node))
        raise _Unhandled(f"Linear on a {x.layout} tensor")

    def layer_norm(self, node: fx.Node, a: Any, normalized: Any, weight: Any, bias: Any, eps: float,
                   name: str) -> _Value:
        x = self.val(node, a)
        channels = x.shape[-1]
        if tuple(normalized) != (channels,) or x.layout not in ("nhwc", "vec"):
            raise _Unhandled(f"layer_norm over {tuple(normalized)} of a {x.layout} tensor")
        y = self.b.layer_norm(name, x.name, float(eps))
        if weight is not None or bias is not None:
            w = torch.ones(channels) if weight is None else weight.detach()
            y = self.b.scale_shift(f"{name}.affine", y, torch.zeros(channels) if bias is None else bias.detach(), w)
        return _Value(y, x.layout, x.shape)

    def binary(self, node: fx.Node, op: str, a: Any, b: Any) -> _Value:
        va, vb = self.arg(a), self.arg(b)
        if isinstance(va, _Static):
            va, vb = vb, va
        if not isinstance(va, _Value):
            raise _Unhandled(f"{op} of two constants")
        if isinstance(vb, _Static):  # x op constant: a per-channel scale_shift when it broadcasts so
            k = _per_channel(vb.value, va)
            if k is None:
                raise _Unhandled(f"{op} with a constant of shape {tuple(torch.as_tensor(vb.value).shape)}")
            name = (self.b.scale_shift(node.name, va.name, k) if op == "add"
                    else self.b.scale_shift(node.name, va.name, torch.zeros_like(k), k))
            return _Value(name, va.layout, self.shape(node))
        if not isinstance(vb, _Value) or va.layout != vb.layout or va.layout == "any":
            raise _Unhandled(f"{op} of tensors of different layouts")
        if op == "add":
            if va.shape != vb.shape:
                raise _Unhandled("add that broadcasts")
            return self.out(node, self.b.add(node.name, [va.name, vb.name]), va.layout)
        small, big = sorted((va, vb), key=lambda v: math.prod(v.shape))
        spatial = va.layout == "map" and small.shape == (*big.shape[:2], 1, 1)
        if small.shape != big.shape and not spatial:
            raise _Unhandled(f"mul of shapes {va.shape} and {vb.shape}")
        return self.out(node, self.b.mul(node.name, big.name, small.name), va.layout)

    def flatten(self, node: fx.Node, a: Any, start: Any, end: Any) -> _Value:
        x = self.val(node, a)
        start, end = (s.value if isinstance(s, _Static) else s for s in (start, end))
        rank = len(x.shape)
        if x.layout == "vec" and start in (1, -1) and end in (-1, 1):
            return x
        if x.layout != "map" or start not in (1, -3) or end not in (-1, 3):
            raise _Unhandled(f"flatten({start}, {end}) of a {x.layout} tensor of rank {rank}")
        return self.out(node, self.b.flatten(node.name, x.name, x.shape[2] * x.shape[3]), "vec")

    def reshape(self, node: fx.Node, a: Any, shape: tuple[int, ...]) -> _Value:
        x = self.val(node, a)
        out = self.shape(node)
        if out == x.shape and x.layout in ("map", "vec"):
            return x
        if x.layout == "map" and len(out) == 2:
            return self.flatten(node, a, 1, -1)
        if x.layout == "map" and len(out) == 5 and out[1] * out[2] == x.shape[1] and out[3:] == x.shape[2:]:
            return _Value(x.name, "shuffle", (out[1], out[2], 0))  # groups, per group, transposed?
        if x.layout == "shuffle" and len(out) == 4:
            g, per, transposed = x.shape
            c = g * per
            if transposed:  # (per, g) read in order: out j = (a, b) <- in b * per + a
                index = [(j % g) * per + j // g for j in range(c)]
            else:
                index = list(range(c))
            return self.out(node, self.b.gather(node.name, x.name, index) if transposed else x.name, "map")
        raise _Unhandled(f"view/reshape of a {x.layout} tensor of shape {x.shape} to {out}")

    def transpose(self, node: fx.Node, a: Any, d0: int, d1: int) -> _Value:
        x = self.val(node, a)
        if x.layout == "shuffle" and {d0, d1} == {1, 2}:
            g, per, t = x.shape
            return _Value(x.name, "shuffle", (g, per, 1 - t))
        raise _Unhandled(f"transpose({d0}, {d1}) of a {x.layout} tensor")

    def permute(self, node: fx.Node, a: Any, dims: tuple[int, ...]) -> _Value:
        x = self.val(node, a)
        dims = tuple(d % 4 for d in dims)
        if x.layout == "map" and dims == _NHWC:
            return _Value(x.name, "nhwc", self.shape(node))
        if x.layout == "nhwc" and dims == _NCHW:
            return _Value(x.name, "map", self.shape(node))
        raise _Unhandled(f"permute{dims} of a {x.layout} tensor")

    def concat(self, node: fx.Node, items: Any, dim: Any) -> _Value:
        vs = [self.val(node, i) for i in items]
        layouts = {v.layout for v in vs}
        dim = dim.value if isinstance(dim, _Static) else dim
        channel_dim = {"map": (1, -3), "vec": (1, -1), "nhwc": (3, -1)}
        if len(layouts) != 1 or next(iter(layouts)) not in channel_dim or dim not in channel_dim[vs[0].layout]:
            raise _Unhandled(f"torch.cat over dim {dim} of {'/'.join(sorted(layouts))} tensors")
        return self.out(node, self.b.concat(node.name, [v.name for v in vs]), vs[0].layout)

    def split(self, node: fx.Node, how: str, a: Any, size: Any, dim: int) -> list[_Value]:
        x = self.val(node, a)
        if x.layout not in ("map", "vec") or dim not in (1, -len(x.shape) + 1):
            raise _Unhandled(f"{how} over dim {dim} of a {x.layout} tensor")
        shapes = self.shape(node)
        outs, start = [], 0
        for k, s in enumerate(shapes):
            c = s[1]
            outs.append(_Value(self.b.gather(f"{node.name}.{k}", x.name, list(range(start, start + c))),
                               x.layout, s))
            start += c
        return outs

    def getitem(self, node: fx.Node, a: Any, index: Any) -> Any:
        v = self.arg(a)
        if isinstance(v, (list, tuple)):
            return v[self.static(index)]
        if isinstance(v, _Value):
            idx = self.static(index)
            if (isinstance(idx, tuple) and len(idx) >= 2 and idx[0] == slice(None) and isinstance(idx[1], slice)
                    and all(i == slice(None) for i in idx[2:]) and v.layout in ("map", "vec")):
                chans = list(range(v.shape[1]))[idx[1]]
                return self.out(node, self.b.gather(node.name, v.name, chans), v.layout)
        raise _Unhandled("indexing")

    def mean(self, node: fx.Node, a: Any, dim: Any, keepdim: Any) -> _Value:
        x = self.val(node, a)
        dim = tuple(dim.value if isinstance(dim, _Static) else dim or ())
        keep = keepdim.value if isinstance(keepdim, _Static) else keepdim
        dims = {"map": ((2, 3), (-2, -1)), "nhwc": ((1, 2), (-3, -2))}.get(x.layout, ())
        if dim not in dims:
            raise _Unhandled(f"mean over {dim} of a {x.layout} tensor")
        y = self.b.global_avg_pool(node.name, x.name, keepdim=bool(keep))
        layout = ("map" if x.layout == "map" else "nhwc") if keep else "vec"
        return _Value(y, layout, self.shape(node))

    def adaptive_avg_pool(self, node: fx.Node, a: Any, size: Any, name: str) -> _Value:
        x = self.map_arg(node, a)
        out = self.shape(node)
        if tuple(out[2:]) == (1, 1):
            return self.out(node, self.b.global_avg_pool(name, x, keepdim=True))
        if tuple(out) == tuple(self.env_shape(a)):
            return self.val(node, a)  # already that size: adaptive pooling is the identity
        return self.out(node, self.b.adaptive_avg_pool(name, x, list(out[2:])))

    def env_shape(self, a: Any) -> tuple[int, ...]:
        return self.val(None, a).shape  # type: ignore[arg-type]

    def pool(self, node: fx.Node, a: Any, mode: str, kernel: Any, stride: Any, padding: Any, ceil_mode: bool,
             count_include_pad: bool = True, dilation: Any = 1, name: str = "") -> _Value:
        x = self.map_arg(node, a)
        if _pair(dilation) != [1, 1]:
            raise _Unhandled(f"{mode}_pool2d with dilation {dilation}")
        k = _pair(kernel)
        s = _pair(stride) if stride not in (None, [], ()) else k
        return self.out(node, self.b.pool(name or node.name, x, mode, k, s, _pair(padding), bool(ceil_mode),
                                          bool(count_include_pad)))

    def interpolate(self, node: fx.Node, a: Any, size: Any, scale: Any, mode: str, align: Any) -> _Value:
        x = self.map_arg(node, a)
        if mode not in ("nearest", "bilinear") or align:
            raise _Unhandled(f"interpolate(mode={mode!r}, align_corners={align})")
        out = self.shape(node)
        if size is not None:
            if tuple(out[2:]) == tuple(self.input_shape[2:]):  # to the input image's size (segmentation heads)
                return self.out(node, self.b.resize(node.name, x, mode, like="input"))
            raise _Unhandled(f"interpolate to a fixed size {size}")
        s = scale if not isinstance(scale, (tuple, list)) else (scale[0] if scale[0] == scale[1] else None)
        if s is None or float(s) != int(s):
            raise _Unhandled(f"interpolate with scale_factor {scale}")
        return self.out(node, self.b.resize(node.name, x, mode, scale=int(s)))

    # -- ops without a rule ------------------------------------------------------------------------
    def make_opaque(self, node: fx.Node, why: str) -> _Value:
        """Keep `node` as it is: an opaque graph node computing it from its tensor arguments."""
        shape = self.shape(node)
        if not isinstance(shape, tuple) or node.name not in self.rec.shapes:
            raise self.fail(node, f"unsupported op {_describe(node, self.mods)} ({why}) with "
                                  f"{'several outputs' if isinstance(shape, (list, dict)) else 'no tensor output'}")
        tensors: list[_Value] = []

        def collect(a: Any) -> Any:
            v = self.arg(a) if isinstance(a, fx.Node) else None
            if isinstance(v, _Value):
                tensors.append(v)
            return a
        fx.node.map_arg((node.args, node.kwargs), collect)
        if not tensors:
            raise self.fail(node, f"unsupported op {_describe(node, self.mods)} ({why}) on no tensor input")
        if any(t.layout == "shuffle" for t in tensors):
            raise self.fail(node, f"unsupported op {_describe(node, self.mods)} on a 5-D channel view")
        module, example = _opaque_module(self.gm, node, self, tensors)
        data = opaque_onnx(module, example, f"{_describe(node, self.mods)} at {node.name}")
        in_shapes = [list(_graph_shape(t))[1:] for t in tensors]
        name = self.b.opaque(node.name, [t.name for t in tensors], _describe(node, self.mods), data,
                             out_shape=list(shape[1:]), in_shapes=in_shapes,
                             out_channels=int(shape[1]) if len(shape) > 1 else 1)
        self.opaque.append(name)
        return _Value(name, _layout_of(shape), shape)


class _Unhandled(Exception):
    """No rule lowers this node: it becomes an opaque node (the message says why)."""


def _graph_shape(v: _Value) -> tuple[int, ...]:
    """The shape of v's graph tensor (N,C,H,W for an nhwc view)."""
    if v.layout == "nhwc":
        n, h, w, c = v.shape
        return (n, c, h, w)
    return v.shape


def _opaque_module(gm: fx.GraphModule, node: fx.Node, low: _Lowering, tensors: list[_Value]
                   ) -> tuple[nn.Module, list[torch.Tensor]]:
    """An fx module computing `node` from its graph tensors (constants baked in)."""
    g = fx.Graph()
    holder = nn.Module()
    placeholders: dict[str, fx.Node] = {}
    for k, t in enumerate(tensors):
        if t.name not in placeholders:
            p = g.placeholder(f"in{k}")
            placeholders[t.name] = g.call_function(torch.permute, (p, list(_NHWC))) if t.layout == "nhwc" else p
    consts = 0

    def remap(a: fx.Node) -> Any:
        nonlocal consts
        v = low.env.get(a.name)
        if isinstance(v, _Value):
            return placeholders[v.name]
        value = low.rec.values.get(a.name)
        if isinstance(value, torch.Tensor):
            holder.register_buffer(f"c{consts}", value.clone())
            consts += 1
            return g.get_attr(f"c{consts - 1}")
        return value
    if node.op == "call_module":
        holder.add_module("op", low.mods[node.target])
        new = g.call_module("op", fx.node.map_arg(node.args, remap), fx.node.map_arg(node.kwargs, remap))
    else:
        new = g.create_node(node.op, node.target, fx.node.map_arg(node.args, remap),
                            fx.node.map_arg(node.kwargs, remap))
    g.output(new)
    seen: dict[str, torch.Tensor] = {}
    example = []
    for t in tensors:
        if t.name not in seen:
            seen[t.name] = torch.randn(_graph_shape(t))
            example.append(seen[t.name])
    return fx.GraphModule(holder, g), example


def _describe(node: fx.Node, mods: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return type(mods[node.target]).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return getattr(node.target, "__name__", str(node.target))


def _per_channel(value: Any, x: _Value) -> torch.Tensor | None:
    """A constant operand as a per-channel vector of x's channels, if it broadcasts as one."""
    k = torch.as_tensor(value, dtype=torch.float32).detach()
    c = x.shape[1] if x.layout in ("map", "vec") else x.shape[-1] if x.layout == "nhwc" else None
    if c is None:
        return None
    if k.numel() == 1:
        return k.reshape(1).expand(c).clone()
    squeezed = k.squeeze()
    if squeezed.dim() != 1 or squeezed.numel() != c:
        return None
    want = {"map": (c, 1, 1), "nhwc": (c,), "vec": (c,)}[x.layout]
    trimmed = tuple(k.shape[-len(want):]) if k.dim() >= len(want) else tuple(k.shape)
    if trimmed != want or any(d != 1 for d in k.shape[:-len(want)]):
        return None
    return squeezed.clone()


def _get(args: tuple, kw: dict, i: int, key: str, default: Any) -> Any:
    return args[i] if len(args) > i else kw.get(key, default)


def _bind(args: tuple, kw: dict, names: tuple[str, ...]) -> dict[str, Any]:
    return {**dict(zip(names, args)), **kw}


def _pair(v: Any) -> list[int]:
    if isinstance(v, (list, tuple)):
        return [int(v[0]), int(v[-1])]
    return [int(v), int(v)]


def _one(v: Any) -> int | list[int]:
    """A conv attribute as one int where both axes agree, else [h, w]."""
    h, w = _pair(v)
    return h if h == w else [h, w]


def lower_fx(module: nn.Module, input_shape: tuple[int, ...]) -> tuple[Graph, list[str]]:
    """(the graph computing exactly what `module` computes in eval mode, its opaque nodes).

    input_shape: the example input (N, C, H, W) the model is run on once to learn shapes; the
    graph holds for inputs of that C, H, W (shape-specific ops, such as a flatten before a
    Linear, are checked against it at export).
    """
    try:
        gm = fx.symbolic_trace(module)
    except Exception as e:  # fx raises many types for data-dependent control flow
        raise DeployError(f"cannot compact: torch.fx could not trace {type(module).__name__} "
                          f"({type(e).__name__}: {str(e)[:120]}); models with data-dependent control "
                          f"flow need a loader that builds a traceable module") from None
    rec = _Recorder(gm)
    x = torch.randn((1, *tuple(input_shape)[1:]), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            rec.run(x)
    except Exception as e:
        raise DeployError(f"cannot compact: {type(module).__name__} fails on an input of shape "
                          f"{tuple(x.shape)} ({type(e).__name__}: {str(e)[:160]})") from None
    return _Lowering(gm, rec, tuple(x.shape)).run()

