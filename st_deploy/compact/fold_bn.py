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
- act after conv/linear (no activation) -> the layer's `act` attribute, for the kinds every
  kernel epilogue applies (graph.ir.LAYER_ACTS);
- add read only by another add -> its inputs join that add (one n-ary add).
"""

from __future__ import annotations

import torch

from ..graph.ir import LAYER_ACTS, Graph, Node, is_layer
from .uses import Uses


def _scale_layer(layer: Node, scale: torch.Tensor | None, shift: torch.Tensor | None) -> None:
    w, b = layer.params["weight"], layer.params["bias"].double()
    if scale is not None:
        s = scale.double()
        layer.params["weight"] = (w.double() * s.view(-1, *([1] * (w.dim() - 1)))).float()
        b = b * s
        dead = scale == 0
        if dead.any():
            mask = layer.params["mask"].clone()  # params are shared with the pass's input: no in-place edits
            mask[dead] = 0
            layer.params["mask"] = mask
    if shift is not None:
        b = b + shift.double()
    layer.params["bias"] = b.float()


def _merge_scale_shift(p: Node, scale: torch.Tensor | None, shift: torch.Tensor) -> None:
    """p's scale_shift followed by (scale, shift) as one scale_shift on p (float64 maths)."""
    ps, pt = p.params.get("scale"), p.params["shift"].double()
    s = None if scale is None else scale.double()
    new_scale = ps.double() * s if ps is not None and s is not None else (s if ps is None else ps.double())
    p.params = {"shift": (pt * s + shift.double() if s is not None else pt + shift.double()).float()}
    if new_scale is not None:
        p.params["scale"] = new_scale.float()


def _bare_layer(p: Node | None) -> bool:
    """A conv/linear with no activation yet: a scale_shift or an act after it can go into it."""
    return p is not None and is_layer(p) and p.attrs.get("act", "none") == "none"


def _fusable_act(n: Node, p: Node) -> bool:
    """An act node whose kind the layer before it can apply in its epilogue."""
    return n.op == "act" and n.attrs["kind"] in LAYER_ACTS and _bare_layer(p)


def _has_dead_nodes(graph: Graph) -> bool:
    live = set(graph.outputs)
    for n in reversed(graph.nodes):
        if n.name not in live:
            return True
        live.update(n.inputs)
    return False


def _fold_at(graph: Graph, uses: Uses, n: Node) -> str | None:
    """The rules at node n, with the maps kept by `uses`.

    Returns "merged" (an add took in an add input; n stays and may fire again), "folded"
    (n went into its producer and is gone) or None.
    """
    prods = uses.producer
    if n.op == "add":
        for k, i in enumerate(n.inputs):
            q = prods.get(i)
            if q is not None and q.op == "add" and uses.private(i):
                uses.set_inputs(n, [*n.inputs[:k], *q.inputs, *n.inputs[k + 1:]])
                uses.drop_node(q)  # q is now unread: remove_unused would drop exactly it
                return "merged"
        return None
    x = n.inputs[0]
    p = prods.get(x)
    if p is None or not uses.private(x):
        return None
    if n.op == "scale_shift":
        scale, shift = n.params.get("scale"), n.params["shift"]
        if _bare_layer(p):
            _scale_layer(p, scale, shift)
        elif p.op == "add":
            layers = []
            for i in p.inputs:
                q = prods.get(i)
                layers.append(q if _bare_layer(q) and uses.private(i) else None)
            if any(q is None for q in layers) or len({q.name for q in layers}) != len(layers):
                return None
            for k, q in enumerate(layers):
                _scale_layer(q, scale, shift if k == 0 else None)
        elif p.op == "scale_shift":
            _merge_scale_shift(p, scale, shift)
        else:
            return None
    elif _fusable_act(n, p):
        p.attrs["act"] = n.attrs["kind"]
    else:
        return None
    uses.replace_uses(n.name, p.name)
    uses.drop_node(n)
    return "folded"


def fold_batch_norms(graph: Graph) -> int:
    """Apply the rules until none fires; return how many fired.

    The result is that of applying the first rule that fires in node order, then
    remove_unused, again and again (each rewrite only changes what later nodes see: a fold
    at n touches n's producer, which only n read, and n's readers, which come after n; an
    add merge touches n's inputs), so one sweep in node order, staying on a node while it
    fires, makes the same rewrites in the same order.
    """
    fired = 0
    if _has_dead_nodes(graph):
        # Dead readers count for the rules until the first rewrite's remove_unused: the first
        # rule that fires in node order, with every reader counted (Uses counts dead ones too).
        uses = Uses(graph)
        if not any(_fold_at(graph, uses, n) for n in graph.nodes):
            return 0
        fired += 1
        graph.nodes = [n for n in graph.nodes if id(n) not in uses.dropped]
        graph.remove_unused()
    uses = Uses(graph)
    for n in graph.nodes:
        if id(n) in uses.dropped:
            continue
        while True:
            r = _fold_at(graph, uses, n)
            if r is None:
                break
            fired += 1
            if r == "folded":
                break
    if uses.dropped:
        graph.nodes = [n for n in graph.nodes if id(n) not in uses.dropped]
    return fired
