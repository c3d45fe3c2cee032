"""Shape inference on a Graph: channel counts and (N, C, H, W) / (N, C) per tensor.

Used by the compaction passes (channel counts) and by the report and planner (spatial
sizes give FLOPs analytically, at any input shape, without running the network).
"""

from __future__ import annotations

from ..errors import DeployError
from .ir import Graph, Node, is_layer, pair


def input_channels(graph: Graph) -> dict[str, int]:
    """Channels of each graph input, read off the first conv/linear consuming it."""
    out = {}
    for name in graph.inputs:
        for n in graph.nodes:
            if name in n.inputs[:1] and is_layer(n):
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
        if is_layer(n):
            c[n.name] = int(n.params["weight"].shape[0])
        elif n.op == "concat":
            c[n.name] = sum(c[i] for i in n.inputs)
        elif n.op == "flatten":
            c[n.name] = c[n.inputs[0]] * n.attrs["hw"]
        elif n.op == "gather":
            c[n.name] = len(n.attrs["index"])
        elif n.op == "opaque":
            c[n.name] = n.attrs["out_channels"]
        elif n.op == "mul":
            c[n.name] = max(c[i] for i in n.inputs)
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
            if len(x) != 4 or x[1] != w.shape[1] * n.attrs["groups"]:
                raise DeployError(f"graph: node {n.name!r} expects {int(w.shape[1]) * n.attrs['groups']} "
                                  f"input channels, gets shape {x}")
            (sh, sw), (ph, pw) = pair(n.attrs["stride"]), pair(n.attrs["padding"])
            dh, dw = pair(n.attrs.get("dilation", 1))
            oh = (x[2] + 2 * ph - dh * (int(w.shape[2]) - 1) - 1) // sh + 1
            ow = (x[3] + 2 * pw - dw * (int(w.shape[3]) - 1) - 1) // sw + 1
            _positive(n, (oh, ow), x)
            s[n.name] = (x[0], int(w.shape[0]), oh, ow)
        elif n.op == "linear":
            if x[-1] != n.params["weight"].shape[1]:
                raise DeployError(f"graph: node {n.name!r} expects {int(n.params['weight'].shape[1])} input features, "
                                  f"gets shape {x} (was the model lowered at another input size?)")
            s[n.name] = (x[0], int(n.params["weight"].shape[0]))
        elif n.op == "pool":
            hw = tuple(_pool_out(x[2 + a], n.attrs["kernel"][a], n.attrs["stride"][a], n.attrs["padding"][a],
                                 n.attrs.get("ceil_mode", False)) for a in (0, 1))
            _positive(n, hw, x)
            s[n.name] = (x[0], x[1], *hw)
        elif n.op == "adaptive_avg_pool":
            s[n.name] = (x[0], x[1], *n.attrs["size"])
        elif n.op == "mul":
            s[n.name] = max((s[i] for i in n.inputs), key=lambda t: t[2:] if len(t) == 4 else ())
        elif n.op == "flatten":
            if len(x) != 4 or x[2] * x[3] != n.attrs["hw"]:
                raise DeployError(f"graph: node {n.name!r} flattens a {n.attrs['hw']}-position map, gets shape {x} "
                                  f"(the model was lowered at another input size)")
            s[n.name] = (x[0], x[1] * x[2] * x[3])
        elif n.op == "gather":
            s[n.name] = (x[0], len(n.attrs["index"]), *x[2:])
        elif n.op == "opaque":
            got = [list(s[i][1:]) for i in n.inputs]
            if got != n.attrs["in_shapes"]:
                raise DeployError(f"graph: opaque op {n.attrs.get('target')} at node {n.name!r} was lowered for inputs "
                                  f"{n.attrs['in_shapes']} (batch left out), gets {got}: export at the input shape "
                                  f"the model was lowered with")
            s[n.name] = (x[0], *n.attrs["out_shape"])
        elif n.op == "resize":
            if len(n.inputs) == 2:
                ref = s[n.inputs[1]]
                s[n.name] = (x[0], x[1], ref[2], ref[3])
            else:
                s[n.name] = (x[0], x[1], x[2] * n.attrs["scale"], x[3] * n.attrs["scale"])
        elif n.op == "concat":
            s[n.name] = (x[0], sum(s[i][1] for i in n.inputs), *x[2:])
        elif n.op == "global_avg_pool":
            s[n.name] = (x[0], x[1], 1, 1) if n.attrs.get("keepdim") else (x[0], x[1])
        else:
            s[n.name] = x
    return s


def _pool_out(size: int, k: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """torch's max/avg_pool2d output size (a ceil-mode window must start inside the input or left padding)."""
    span = size + 2 * pad - k
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _positive(n: Node, hw: tuple[int, int], x: tuple[int, ...]) -> None:
    if min(hw) < 1:
        raise DeployError(f"graph: node {n.name!r} ({n.op}) gives an empty output for input shape {x}")
