"""GraphBuilder: appends nodes in topological order, shared by every lowering.

Lowerings (SuperTickets module walk, torch.fx trace) call one method per op and get the
output tensor's name back, so the graph they build is correct by construction: a node
can only read names that exist. BN is lowered to scale_shift (folding is a later pass,
tested separately), computed in float64 so the lowered graph matches torch's BN closely.
"""

from __future__ import annotations

from typing import Any

import torch

from .ir import Graph, Node


def bn_scale_shift(gamma: torch.Tensor, beta: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as y = x * scale + shift (float32, computed in float64)."""
    scale = gamma.double() / torch.sqrt(var.double() + eps)
    shift = beta.double() - mean.double() * scale
    return scale.float(), shift.float()


class GraphBuilder:
    def __init__(self, inputs: list[str]) -> None:
        self.inputs = list(inputs)
        self.nodes: list[Node] = []
        self._names: set[str] = set(inputs)

    def _add(self, name: str, op: str, inputs: list[str], attrs: dict[str, Any] | None = None,
             params: dict[str, torch.Tensor] | None = None) -> str:
        base, k = name, 1
        while name in self._names:  # a module called twice gets name, name#1, ...
            name = f"{base}#{k}"
            k += 1
        self._names.add(name)
        self.nodes.append(Node(name, op, list(inputs), dict(attrs or {}),
                               {k_: v.detach().float().clone() for k_, v in (params or {}).items()}))
        return name

    def conv2d(self, name: str, x: str, weight: torch.Tensor, bias: torch.Tensor | None,
               stride: Any, padding: Any, groups: int, mask: torch.Tensor | None = None, dilation: Any = 1) -> str:
        """stride, padding, dilation: an int, or [h, w] where the axes differ."""
        mask = torch.ones_like(weight) if mask is None else (mask != 0).to(weight.dtype)
        bias = torch.zeros(weight.shape[0]) if bias is None else bias
        attrs = {"stride": stride, "padding": padding, "groups": groups, "act": "none"}
        if dilation != 1:
            attrs["dilation"] = dilation
        return self._add(name, "conv2d", [x], attrs, {"weight": weight * mask, "bias": bias, "mask": mask})

    def linear(self, name: str, x: str, weight: torch.Tensor, bias: torch.Tensor | None,
               mask: torch.Tensor | None = None) -> str:
        mask = torch.ones_like(weight) if mask is None else (mask != 0).to(weight.dtype)
        bias = torch.zeros(weight.shape[0]) if bias is None else bias
        return self._add(name, "linear", [x], {"act": "none"},
                         {"weight": weight * mask, "bias": bias, "mask": mask})

    def batch_norm(self, name: str, x: str, gamma: torch.Tensor, beta: torch.Tensor,
                   mean: torch.Tensor, var: torch.Tensor, eps: float, selection: bool = False) -> str:
        scale, shift = bn_scale_shift(gamma, beta, mean, var, eps)
        params = {"scale": scale, "shift": shift}
        attrs: dict[str, Any] = {}
        if selection:
            # The select pass needs gamma (the threshold is on |gamma|) and beta (the value an
            # unselected channel is taken to emit); it removes both params after use.
            attrs["role"] = "selection"
            params.update(gamma=gamma, beta=beta)
        return self._add(name, "scale_shift", [x], attrs, params)

    def scale_shift(self, name: str, x: str, shift: torch.Tensor, scale: torch.Tensor | None = None) -> str:
        params = {"shift": shift} if scale is None else {"scale": scale, "shift": shift}
        return self._add(name, "scale_shift", [x], {}, params)

    def act(self, name: str, x: str, kind: str) -> str:
        return x if kind == "none" else self._add(name, "act", [x], {"kind": kind})

    def add(self, name: str, xs: list[str]) -> str:
        return xs[0] if len(xs) == 1 else self._add(name, "add", xs)

    def resize(self, name: str, x: str, mode: str, scale: int | None = None, like: str | None = None) -> str:
        if like is not None:
            return self._add(name, "resize", [x, like], {"mode": mode})
        return self._add(name, "resize", [x], {"mode": mode, "scale": int(scale)})

    def concat(self, name: str, xs: list[str]) -> str:
        return xs[0] if len(xs) == 1 else self._add(name, "concat", xs)

    def global_avg_pool(self, name: str, x: str, keepdim: bool = False) -> str:
        return self._add(name, "global_avg_pool", [x], {"keepdim": True} if keepdim else {})

    def pool(self, name: str, x: str, mode: str, kernel: list[int], stride: list[int], padding: list[int],
             ceil_mode: bool = False, count_include_pad: bool = True) -> str:
        attrs = {"mode": mode, "kernel": list(kernel), "stride": list(stride), "padding": list(padding),
                 "ceil_mode": bool(ceil_mode)}
        if mode == "avg":
            attrs["count_include_pad"] = bool(count_include_pad)
        return self._add(name, "pool", [x], attrs)

    def adaptive_avg_pool(self, name: str, x: str, size: list[int]) -> str:
        return self._add(name, "adaptive_avg_pool", [x], {"size": [int(v) for v in size]})

    def mul(self, name: str, x: str, y: str) -> str:
        """x * y; y may be N,C,1,1 against x's N,C,H,W (squeeze-excitation)."""
        return self._add(name, "mul", [x, y])

    def flatten(self, name: str, x: str, hw: int) -> str:
        return self._add(name, "flatten", [x], {"hw": int(hw)})

    def layer_norm(self, name: str, x: str, eps: float) -> str:
        return self._add(name, "layer_norm", [x], {"eps": float(eps)})

    def gather(self, name: str, x: str, index: list[int]) -> str:
        return self._add(name, "gather", [x], {"index": [int(i) for i in index]})

    def opaque(self, name: str, xs: list[str], target: str, onnx_model: bytes, out_shape: list[int],
               in_shapes: list[list[int]], out_channels: int) -> str:
        name = self._add(name, "opaque", xs, {"target": target, "out_shape": [int(v) for v in out_shape],
                                              "in_shapes": in_shapes, "out_channels": int(out_channels)})
        # Kept as bytes (not .float()): the one non-float param, checked by graph/validate.py.
        self.nodes[-1].params["onnx"] = torch.frombuffer(bytearray(onnx_model), dtype=torch.uint8).clone()
        return name

    def build(self, outputs: list[str]) -> Graph:
        return Graph(self.nodes, self.inputs, list(outputs))
