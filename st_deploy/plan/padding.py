"""Channel counts that suit ONNX Runtime: pad odd counts back up with zero channels.

Compaction removes dead channels one by one, leaving counts like 25, 87 or 142. ORT's fast CPU
convolutions work on channel blocks (NCHWc: 16 on AVX-512, 8 on AVX2); a tensor whose count is
not a multiple of the block runs its convs unblocked, with reorders around them. Measured on a
pruned torchvision MobileNetV2 (224², 1 thread, benchmarks/zoo.py): our dense model at 0.54x the
speed of a plain torch.onnx.export of the same ticket, its convs 13 ms against 7.6 ms.

So the ONNX exports pad a tensor's channels up to the next multiple of BLOCK where that adds at
most MAX_GROWTH of them. Padding is exact: a padded channel is produced by a zero filter and
read only by dense convs/linears, whose weights on it are zero. Tensors that share their
channels (through depthwise convs, activations, scale_shift, adds, products, pooling, resizes)
are padded together; a group is left as it is when any of its tensors is read or written by
an op that mixes or reorders channels (concat, gather, flatten, layer_norm, opaque, grouped
convs) or is a graph input or output. The TVM exports run our own kernels, which need no
blocking, and are not padded.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..graph.ir import Graph, Node
from ..graph.kinds import is_depthwise, is_layer, mixes_channels
from ..graph.shapes import channel_counts

BLOCK = 16
MAX_GROWTH = 0.5
_COUPLING = ("act", "scale_shift", "pool", "global_avg_pool", "adaptive_avg_pool", "resize", "add", "mul")


class _Groups:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, t: str) -> str:
        self.parent.setdefault(t, t)
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def join(self, names: list[str]) -> None:
        root = self.find(names[0])
        for t in names[1:]:
            self.parent[self.find(t)] = root


def plan_padding(graph: Graph, block: int = BLOCK) -> dict[str, int]:
    """{tensor: channels to add} for every tensor worth padding (see the module docstring)."""
    counts = channel_counts(graph)
    groups = _Groups()
    blocked: set[str] = set(graph.inputs) | set(graph.outputs)
    for n in graph.nodes:
        groups.find(n.name)
        if mixes_channels(n):
            continue
        if is_depthwise(n):
            groups.join([n.name, n.inputs[0]])
        elif n.op in _COUPLING:
            groups.join([n.name, *(n.inputs if n.op in ("add", "mul") else n.inputs[:1])])
        else:  # mixes or reorders channels: neither its inputs nor its output may change
            blocked.update([n.name, *n.inputs])
    members: dict[str, list[str]] = {}
    for t in counts:
        members.setdefault(groups.find(t), []).append(t)
    pad: dict[str, int] = {}
    for tensors in members.values():
        c = counts[tensors[0]]
        extra = -c % block
        if extra == 0 or c < block // 2 or extra > MAX_GROWTH * c or blocked.intersection(tensors):
            continue
        pad.update({t: extra for t in tensors})
    return pad


def _grow(v: torch.Tensor, dim: int, extra: int) -> torch.Tensor:
    shape = list(v.shape)
    shape[dim] = extra
    return torch.cat([v, torch.zeros(shape, dtype=v.dtype)], dim)


def pad_channels(graph: Graph, block: int = BLOCK) -> tuple[Graph, list[dict[str, Any]]]:
    """A copy of `graph` with plan_padding's channels added; the decisions, for the manifest."""
    pad = plan_padding(graph, block)
    if not pad:
        return graph, []
    counts = channel_counts(graph)
    # New nodes, attrs and param dicts; tensors shared (the edits below replace them, never write into them).
    g = Graph([Node(n.name, n.op, list(n.inputs), copy.deepcopy(n.attrs), dict(n.params)) for n in graph.nodes],
              list(graph.inputs), list(graph.outputs))
    for n in g.nodes:
        out, x = pad.get(n.name, 0), pad.get(n.inputs[0], 0) if n.inputs else 0
        if is_layer(n) and (out or x):
            dw = is_depthwise(n)  # before its weight and groups change below
            for k in ("weight", "mask"):
                w = _grow(n.params[k], 0, out) if out else n.params[k]
                n.params[k] = _grow(w, 1, x) if x and not dw else w
            if out:
                n.params["bias"] = _grow(n.params["bias"], 0, out)
            if dw:
                n.attrs["groups"] = counts[n.name] + out
        elif n.op == "scale_shift" and out:
            n.params = {k: _grow(v, 0, out) for k, v in n.params.items()}
    produced = graph.producers()
    decisions = [{"tensor": t, "channels": counts[t], "padded_to": counts[t] + e}
                 for t, e in pad.items() if t in produced]
    return g, decisions
