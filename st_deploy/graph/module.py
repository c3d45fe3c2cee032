"""GraphModule: runs a Graph with standard torch layers.

Each conv2d/linear node becomes an nn.Conv2d/nn.Linear (with bias) carrying its remaining
unstructured mask as a `weight_mask` buffer (the weight is already masked), so the module
is a plain network a user can inspect, and `to_graph` gives the graph back unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .ir import Graph, Node, is_layer, pair
from .opaque import run_opaque


def apply_act(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "none":
        return x
    if kind == "relu":
        return F.relu(x)
    if kind == "relu6":
        return F.relu6(x)
    if kind == "swish":
        return x * torch.sigmoid(x)
    if kind == "hswish":
        return x * F.relu6(x + 3.0) / 6.0
    if kind == "sigmoid":
        return torch.sigmoid(x)
    if kind == "hsigmoid":
        return F.relu6(x + 3.0) / 6.0
    if kind == "gelu":
        return F.gelu(x)
    if kind == "tanh":
        return torch.tanh(x)
    raise ValueError(f"unknown activation {kind!r}")


def _layer_key(name: str) -> str:
    # ModuleDict keys cannot contain dots.
    return name.replace(".", "__")


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, *([1] * (x.dim() - 2)))


class GraphModule(nn.Module):
    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        self.layers = nn.ModuleDict()
        for n in graph.nodes:
            if n.op == "conv2d":
                w = n.params["weight"]
                layer = nn.Conv2d(w.shape[1] * n.attrs["groups"], w.shape[0], tuple(w.shape[2:]),
                                  pair(n.attrs["stride"]), pair(n.attrs["padding"]),
                                  dilation=pair(n.attrs.get("dilation", 1)), groups=n.attrs["groups"])
            elif n.op == "linear":
                w = n.params["weight"]
                layer = nn.Linear(w.shape[1], w.shape[0])
            elif n.op == "scale_shift":
                layer = nn.Module()
                for k in ("scale", "shift"):
                    if k in n.params:
                        layer.register_buffer(k, n.params[k].detach().clone())
                self.layers[_layer_key(n.name)] = layer
                continue
            else:
                continue
            with torch.no_grad():
                layer.weight.copy_(n.params["weight"])
                layer.bias.copy_(n.params["bias"])
            if "mask" in n.params:
                layer.register_buffer("weight_mask", n.params["mask"].detach().clone())
            self.layers[_layer_key(n.name)] = layer
        self._opaque: dict[str, Any] = {}
        self.eval()

    def layer(self, node_name: str) -> nn.Module:
        return self.layers[_layer_key(node_name)]

    def forward(self, *inputs: torch.Tensor):
        env = dict(zip(self.graph.inputs, inputs))
        for n in self.graph.nodes:
            env[n.name] = self._run(n, [env[i] for i in n.inputs])
        outs = [env[o] for o in self.graph.outputs]
        return outs[0] if len(outs) == 1 else outs

    def _run(self, n: Node, xs: list[torch.Tensor]) -> torch.Tensor:
        if is_layer(n):
            return apply_act(self.layer(n.name)(xs[0]), n.attrs.get("act", "none"))
        if n.op == "act":
            return apply_act(xs[0], n.attrs["kind"])
        if n.op == "add":
            y = xs[0]
            for x in xs[1:]:
                y = y + x
            return y
        if n.op == "scale_shift":
            layer = self.layer(n.name)
            y = xs[0] * _per_channel(layer.scale, xs[0]) if hasattr(layer, "scale") else xs[0]
            return y + _per_channel(layer.shift, xs[0])
        if n.op == "resize":
            if len(xs) == 2:
                return F.interpolate(xs[0], size=xs[1].shape[2:], mode=n.attrs["mode"],
                                     **({"align_corners": False} if n.attrs["mode"] == "bilinear" else {}))
            return F.interpolate(xs[0], scale_factor=n.attrs["scale"], mode=n.attrs["mode"],
                                 **({"align_corners": False} if n.attrs["mode"] == "bilinear" else {}))
        if n.op == "concat":
            return torch.cat(xs, dim=1)
        if n.op == "global_avg_pool":
            return xs[0].mean(dim=(2, 3), keepdim=bool(n.attrs.get("keepdim", False)))
        if n.op == "pool":
            a = n.attrs
            if a["mode"] == "max":
                return F.max_pool2d(xs[0], a["kernel"], a["stride"], a["padding"], ceil_mode=a.get("ceil_mode", False))
            return F.avg_pool2d(xs[0], a["kernel"], a["stride"], a["padding"], ceil_mode=a.get("ceil_mode", False),
                                count_include_pad=a.get("count_include_pad", True))
        if n.op == "adaptive_avg_pool":
            return F.adaptive_avg_pool2d(xs[0], n.attrs["size"])
        if n.op == "mul":
            return xs[0] * xs[1]
        if n.op == "flatten":
            return xs[0].flatten(1)
        if n.op == "layer_norm":
            return F.layer_norm(xs[0].movedim(1, -1), (xs[0].shape[1],), eps=n.attrs["eps"]).movedim(-1, 1)
        if n.op == "gather":
            return xs[0][:, n.attrs["index"]]
        if n.op == "opaque":
            return self._run_opaque(n, xs)
        raise ValueError(f"unknown op {n.op!r}")

    def __getstate__(self) -> dict[str, Any]:
        # ORT sessions of opaque nodes neither pickle nor deep-copy: a copy makes its own on first use.
        state = self.__dict__.copy()
        state["_opaque"] = {}
        return state

    def _run_opaque(self, n: Node, xs: list[torch.Tensor]) -> torch.Tensor:
        """An op st-deploy has no rule for, run from its ONNX form (the form every exporter uses)."""
        return run_opaque(n, xs, self._opaque)

    def to_graph(self) -> Graph:
        """The graph with the layers' current weights (after any in-place edits)."""
        g = self.graph.clone()
        for n in g.nodes:
            if is_layer(n):
                layer = self.layer(n.name)
                n.params["weight"] = layer.weight.detach().clone()
                n.params["bias"] = layer.bias.detach().clone()
        return g
