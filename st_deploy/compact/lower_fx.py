"""Lower a generic masked model (standard torch layers) to a Graph with torch.fx.

Masks are `weight_mask` buffers on nn.Conv2d / nn.Linear whose `weight` is already
multiplied by the mask (the generic loader's contract). One handler per op kind, looked up
in three tables (modules, functions, methods); anything else is a DeployError naming the
op and the node, so an unsupported model fails before any pass runs.

Tensors are tracked with their layout: AdaptiveAvgPool2d(1) gives a pooled N,C,1,1 value
that only flatten (or view/reshape to (N, -1)) may read; mean over (2, 3) gives N,C directly.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..errors import DeployError
from ..graph.build import GraphBuilder
from ..graph.ir import Graph

_ACT_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hswish", nn.SiLU: "swish"}
_ACT_FUNCS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardswish: "hswish",
              F.silu: "swish"}
_ACT_METHODS = {"relu": "relu"}


class _Value:
    """A traced value: the graph tensor it is, and its layout: "map" (N,C,H,W), "pooled"
    (N,C,1,1 after global pooling: the graph holds it as N,C) or "vec" (N,C)."""

    def __init__(self, name: str, layout: str = "map") -> None:
        self.name, self.layout = name, layout


class _Lowering:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.mods = dict(gm.named_modules())
        self.b = GraphBuilder(["input"])
        self.env: dict[str, Any] = {}

    def fail(self, node: fx.Node, what: str) -> DeployError:
        return DeployError(f"cannot compact: unsupported op {what} at node {node.name!r}; supported: Conv2d, "
                           f"BatchNorm2d, ReLU/ReLU6/Hardswish/SiLU, add, flatten, AdaptiveAvgPool2d(1), "
                           f"mean over (2, 3), Linear, Dropout, F.interpolate, torch.cat")

    def val(self, node: fx.Node, a: Any) -> _Value:
        v = self.env.get(a.name) if isinstance(a, fx.Node) else None
        if not isinstance(v, _Value):
            raise self.fail(node, f"with a non-tensor argument {a!r:.40}")
        return v

    def plain(self, node: fx.Node, a: Any) -> str:
        """A spatial map argument (conv, BN, resize, concat, pooling read only those)."""
        v = self.val(node, a)
        if v.layout != "map":
            raise self.fail(node, f"reading a {v.layout} tensor where a spatial map is needed "
                                  f"(a pooled map may only be flattened)")
        return v.name

    def same(self, node: fx.Node, args: list[Any], make: Callable[[list[str]], str]) -> _Value:
        """Elementwise ops (activations, adds) keep their inputs' layout, which must agree."""
        vs = [self.val(node, a) for a in args]
        if len({v.layout for v in vs}) != 1:
            raise self.fail(node, "an elementwise op on tensors of different layouts")
        return _Value(make([v.name for v in vs]), vs[0].layout)

    def run(self) -> Graph:
        outputs: list[str] = []
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if self.env:
                    raise DeployError(f"cannot compact: the model takes several inputs ({node.name!r}); one image tensor is supported")
                self.env[node.name] = _Value("input")
            elif node.op == "output":
                outs = node.args[0] if isinstance(node.args[0], (tuple, list)) else [node.args[0]]
                vs = [self.val(node, o) for o in outs]
                if any(v.layout == "pooled" for v in vs):
                    raise self.fail(node, "returning a pooled N,C,1,1 map (flatten it)")
                outputs = [v.name for v in vs]
            elif node.op == "call_module":
                self.env[node.name] = self.module(node, self.mods[node.target])
            elif node.op == "call_function":
                self.env[node.name] = self.function(node)
            elif node.op == "call_method":
                self.env[node.name] = self.method(node)
            elif node.op == "get_attr":
                raise self.fail(node, f"parameter access {node.target}")
        return self.b.build(outputs)

    # -- modules -----------------------------------------------------------------------
    def module(self, node: fx.Node, m: nn.Module) -> _Value:
        name = str(node.target)
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return self.val(node, node.args[0])
        x = self.val(node, node.args[0])
        if isinstance(m, nn.Flatten):
            return self.flatten(node, x, m.start_dim, m.end_dim)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            if m.output_size not in (1, (1, 1)):
                raise self.fail(node, f"AdaptiveAvgPool2d({m.output_size})")
            return _Value(self.b.global_avg_pool(name, self.plain(node, node.args[0])), "pooled")
        if isinstance(m, nn.Linear):
            if x.layout != "vec":
                raise self.fail(node, f"Linear {name} on a {x.layout} tensor (flatten a pooled map first)")
            return _Value(self.b.linear(name, x.name, m.weight, m.bias, getattr(m, "weight_mask", None)), "vec")
        for cls, kind in _ACT_MODULES.items():
            if type(m) is cls:
                return self.same(node, [node.args[0]], lambda xs: self.b.act(name, xs[0], kind))
        xs = self.plain(node, node.args[0])
        if isinstance(m, nn.Conv2d):
            if (m.kernel_size[0] != m.kernel_size[1] or m.stride[0] != m.stride[1] or m.dilation != (1, 1)
                    or not isinstance(m.padding, tuple) or m.padding[0] != m.padding[1] or m.padding_mode != "zeros"):
                raise self.fail(node, f"Conv2d {name} with non-square kernel/stride/padding, dilation or "
                                      f"non-zero padding mode")
            return _Value(self.b.conv2d(name, xs, m.weight, m.bias, m.stride[0], m.padding[0], m.groups,
                                        getattr(m, "weight_mask", None)))
        if isinstance(m, nn.BatchNorm2d):
            if not m.track_running_stats or m.running_mean is None:
                raise self.fail(node, f"BatchNorm2d {name} without running statistics")
            gamma = m.weight if m.affine else torch.ones_like(m.running_mean)
            beta = m.bias if m.affine else torch.zeros_like(m.running_mean)
            return _Value(self.b.batch_norm(name, xs, gamma, beta, m.running_mean, m.running_var, m.eps))
        if isinstance(m, nn.Upsample):
            return self.interpolate(node, xs, m.size, m.scale_factor, m.mode, m.align_corners)
        raise self.fail(node, type(m).__name__)

    # -- functions and methods ---------------------------------------------------------------
    def function(self, node: fx.Node) -> _Value:
        f, args, kw = node.target, node.args, node.kwargs
        if f in _ACT_FUNCS:
            return self.same(node, [args[0]], lambda xs: self.b.act(node.name, xs[0], _ACT_FUNCS[f]))
        if f in (operator.add, operator.iadd, torch.add):
            if kw.get("alpha", 1) != 1 or len(args) != 2:
                raise self.fail(node, "add with alpha or a non-tensor operand")
            return self.same(node, list(args), lambda xs: self.b.add(node.name, xs))
        if f is torch.flatten:
            return self.flatten(node, self.val(node, args[0]), args[1] if len(args) > 1 else kw.get("start_dim", 0),
                                args[2] if len(args) > 2 else kw.get("end_dim", -1))
        if f is torch.cat:
            dim = args[1] if len(args) > 1 else kw.get("dim", 0)
            if dim != 1:
                raise self.fail(node, f"torch.cat over dim {dim}")
            return _Value(self.b.concat(node.name, [self.plain(node, a) for a in args[0]]))
        if f is torch.mean:
            return self.mean(node, args[0], args[1] if len(args) > 1 else kw.get("dim"), kw.get("keepdim", False))
        if f is F.adaptive_avg_pool2d:
            if args[1] not in (1, (1, 1)):
                raise self.fail(node, f"adaptive_avg_pool2d to {args[1]}")
            return _Value(self.b.global_avg_pool(node.name, self.plain(node, args[0])), "pooled")
        if f is F.interpolate:
            names = ("input", "size", "scale_factor", "mode", "align_corners")
            a = dict(zip(names, args), **kw)
            return self.interpolate(node, self.plain(node, a["input"]), a.get("size"), a.get("scale_factor"),
                                    a.get("mode", "nearest"), a.get("align_corners"))
        if f is F.dropout:
            return self.val(node, args[0])
        raise self.fail(node, getattr(f, "__name__", str(f)))

    def method(self, node: fx.Node) -> _Value:
        m, args, kw = node.target, node.args, node.kwargs
        if m in _ACT_METHODS:
            return self.same(node, [args[0]], lambda xs: self.b.act(node.name, xs[0], _ACT_METHODS[m]))
        if m in ("add", "add_") and len(args) == 2 and kw.get("alpha", 1) == 1:
            return self.same(node, list(args), lambda xs: self.b.add(node.name, xs))
        if m == "flatten":
            return self.flatten(node, self.val(node, args[0]), args[1] if len(args) > 1 else kw.get("start_dim", 0),
                                args[2] if len(args) > 2 else kw.get("end_dim", -1))
        if m in ("view", "reshape") and len(args) == 3 and args[2] == -1:
            return self.nc_value(node, self.val(node, args[0]))
        if m == "mean":
            return self.mean(node, args[0], args[1] if len(args) > 1 else kw.get("dim"), kw.get("keepdim", False))
        if m == "contiguous":
            return self.val(node, args[0])
        raise self.fail(node, f"Tensor.{m}")

    # -- helpers ---------------------------------------------------------------------------
    def nc_value(self, node: fx.Node, x: _Value) -> _Value:
        if x.layout == "map":
            raise self.fail(node, "flatten/view of a map that is not globally pooled")
        return _Value(x.name, "vec")

    def flatten(self, node: fx.Node, x: _Value, start: int, end: int) -> _Value:
        if start != 1 or end != -1:
            raise self.fail(node, f"flatten({start}, {end})")
        return self.nc_value(node, x)

    def mean(self, node: fx.Node, a: Any, dim: Any, keepdim: bool) -> _Value:
        if tuple(dim or ()) not in ((2, 3), (-2, -1)):
            raise self.fail(node, f"mean over {dim}")
        return _Value(self.b.global_avg_pool(node.name, self.plain(node, a)), "pooled" if keepdim else "vec")

    def interpolate(self, node: fx.Node, x: str, size: Any, scale: Any, mode: str, align: Any) -> _Value:
        if mode not in ("nearest", "bilinear") or align or size is not None or scale is None:
            raise self.fail(node, f"interpolate(mode={mode!r}, size={size}, align_corners={align}); supported: "
                                  f"nearest/bilinear by an integer scale_factor, align_corners False")
        s = scale if not isinstance(scale, (tuple, list)) else (scale[0] if scale[0] == scale[1] else None)
        if s is None or float(s) != int(s):
            raise self.fail(node, f"interpolate with scale_factor {scale}")
        return _Value(self.b.resize(node.name, x, mode, scale=int(s)))


def lower_fx(module: nn.Module) -> Graph:
    """The graph computing exactly what `module` computes in eval mode."""
    try:
        gm = fx.symbolic_trace(module)
    except Exception as e:  # fx raises many types for data-dependent control flow
        raise DeployError(f"cannot compact: torch.fx could not trace {type(module).__name__} "
                          f"({type(e).__name__}: {str(e)[:120]}); models with data-dependent control "
                          f"flow need a loader that builds a traceable module") from None
    return _Lowering(gm).run()
