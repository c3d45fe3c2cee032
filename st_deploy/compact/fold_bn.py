"""Fold scale_shift (BatchNorm) and activations into the convs/linears that feed them.

Maths: conv(x; W, b) * s + t == conv(x; W * s[:, None, None, None], b * s + t), per output
channel. A sum of branches followed by one BN (SuperTickets' pw_bn) folds into every branch:
s * (sum_b conv_b(x)) + t == sum_b conv_b(x; W_b * s, b_b * s) + t, the shift going into
one bias. A masked-out weight is 0 and stays exactly 0 (0 * s); a filter scaled by s = 0 is
masked out entirely. Arithmetic in float64, stored in float32.

Rules, applied until none fires, each only where the intermediate tensor has no other
reader and is no graph output:
- scale_shift after conv/linear (no activation) -> into that layer;
- scale_shift after an add whose inputs are all such layers -> into all of them;
- scale_shift after scale_shift -> one scale_shift;
- act after conv/linear (no activation) -> the layer's `act` attribute;
- add read only by another add -> its inputs join that add (one n-ary add).
"""

from __future__ import annotations

import torch

from ..graph.ir import Graph, Node


def _scale_layer(layer: Node, scale: torch.Tensor | None, shift: torch.Tensor | None) -> None:
    w, b = layer.params["weight"], layer.params["bias"].double()
    if scale is not None:
        s = scale.double()
        layer.params["weight"] = (w.double() * s.view(-1, *([1] * (w.dim() - 1)))).float()
        b = b * s
        dead = scale == 0
        if dead.any():
            layer.params["mask"][dead] = 0
    if shift is not None:
        b = b + shift.double()
    layer.params["bias"] = b.float()


def _foldable_layer(graph: Graph, name: str, consumers: dict[str, list[Node]]) -> Node | None:
    p = graph.producers().get(name)
    if p is None or p.op not in ("conv2d", "linear") or p.attrs.get("act", "none") != "none":
        return None
    if name in graph.outputs or len(consumers.get(name, [])) != 1:
        return None
    return p


def _private(graph: Graph, name: str, consumers: dict[str, list[Node]]) -> bool:
    return name not in graph.outputs and len(consumers.get(name, [])) == 1


def _fold_once(graph: Graph) -> bool:
    consumers = graph.consumers()
    prods = graph.producers()
    for n in graph.nodes:
        if n.op == "add":
            for k, i in enumerate(n.inputs):
                q = prods.get(i)
                if q is not None and q.op == "add" and _private(graph, i, consumers):
                    n.inputs = [*n.inputs[:k], *q.inputs, *n.inputs[k + 1:]]
                    return True  # q is now unread; remove_unused drops it
            continue
        x = n.inputs[0]
        p = prods.get(x)
        if p is None or not _private(graph, x, consumers):
            continue
        if n.op == "scale_shift":
            scale, shift = n.params.get("scale"), n.params["shift"]
            if p.op in ("conv2d", "linear") and p.attrs.get("act", "none") == "none":
                _scale_layer(p, scale, shift)
            elif p.op == "add":
                layers = [_foldable_layer(graph, i, consumers) for i in p.inputs]
                if any(q is None for q in layers) or len({q.name for q in layers}) != len(layers):
                    continue
                for k, q in enumerate(layers):
                    _scale_layer(q, scale, shift if k == 0 else None)
            elif p.op == "scale_shift":
                ps, pt = p.params.get("scale"), p.params["shift"].double()
                s = None if scale is None else scale.double()
                new_scale = ps.double() * s if ps is not None and s is not None else (s if ps is None else ps.double())
                p.params = {"shift": (pt * s + shift.double() if s is not None else pt + shift.double()).float()}
                if new_scale is not None:
                    p.params["scale"] = new_scale.float()
            else:
                continue
        elif n.op == "act" and p.op in ("conv2d", "linear") and p.attrs.get("act", "none") == "none":
            p.attrs["act"] = n.attrs["kind"]
        else:
            continue
        graph.replace_uses(n.name, p.name)
        graph.nodes.remove(n)
        return True
    return False


def fold_batch_norms(graph: Graph) -> int:
    """Apply the rules until none fires; return how many fired."""
    fired = 0
    while _fold_once(graph):
        fired += 1
        graph.remove_unused()
    return fired
