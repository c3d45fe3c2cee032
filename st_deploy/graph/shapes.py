"""Shape inference on a Graph: channel counts and (N, C, H, W) / (N, C) per tensor.

Used by the compaction passes (channel counts) and by the report and planner (spatial
sizes give FLOPs analytically, at any input shape, without running the network).
"""

from __future__ import annotations

from ..errors import DeployError
from .ir import Graph


def input_channels(graph: Graph) -> dict[str, int]:
    """Channels of each graph input, read off the first conv/linear consuming it."""
    out = {}
    for name in graph.inputs:
        for n in graph.nodes:
            if name in n.inputs[:1] and n.op in ("conv2d", "linear"):
                w = n.params["weight"]
                out[name] = int(w.shape[1]) * int(n.attrs.get("groups", 1))
                break
        else:
            raise DeployError(f"graph: cannot tell the channels of input {name!r}: no conv or linear reads it")
    return out


def channel_counts(graph: Graph) -> dict[str, int]:
    """Channels of every tensor (graph inputs and node outputs)."""
    c = dict(input_channels(graph))
    for n in graph.nodes:
        if n.op in ("conv2d", "linear"):
            c[n.name] = int(n.params["weight"].shape[0])
        elif n.op == "concat":
            c[n.name] = sum(c[i] for i in n.inputs)
        else:
            c[n.name] = c[n.inputs[0]]
    return c


def infer_shapes(graph: Graph, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor for a single input of `input_shape` (N, C, H, W)."""
    if len(graph.inputs) != 1:
        raise DeployError(f"graph: shape inference needs one input, the graph has {len(graph.inputs)}")
    s: dict[str, tuple[int, ...]] = {graph.inputs[0]: tuple(int(v) for v in input_shape)}
    for n in graph.nodes:
        x = s[n.inputs[0]]
        if n.op == "conv2d":
            w = n.params["weight"]
            k, st, p = int(w.shape[2]), n.attrs["stride"], n.attrs["padding"]
            if len(x) != 4 or x[1] != w.shape[1] * n.attrs["groups"]:
                raise DeployError(f"graph: node {n.name!r} expects {int(w.shape[1]) * n.attrs['groups']} "
                                  f"input channels, gets shape {x}")
            s[n.name] = (x[0], int(w.shape[0]), (x[2] + 2 * p - k) // st + 1, (x[3] + 2 * p - k) // st + 1)
        elif n.op == "linear":
            s[n.name] = (x[0], int(n.params["weight"].shape[0]))
        elif n.op == "resize":
            if len(n.inputs) == 2:
                ref = s[n.inputs[1]]
                s[n.name] = (x[0], x[1], ref[2], ref[3])
            else:
                s[n.name] = (x[0], x[1], x[2] * n.attrs["scale"], x[3] * n.attrs["scale"])
        elif n.op == "concat":
            s[n.name] = (x[0], sum(s[i][1] for i in n.inputs), *x[2:])
        elif n.op == "global_avg_pool":
            s[n.name] = (x[0], x[1])
        else:
            s[n.name] = x
    return s
