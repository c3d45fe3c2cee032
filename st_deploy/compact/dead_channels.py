"""Remove channels nobody reads, across every layer that couples them.

Liveness runs backward from the graph outputs: a conv/linear needs input channel c when a
needed output filter has a nonzero weight on c (after fold_const, constant channels have
none). Channel-coupled layers keep the same channel set on every side, so a channel goes
only when it is dead on every side:
- elementwise layers (act, scale_shift, resize, global pooling) and adds (residual adds,
  FuseModule sums, branch sums): inputs and output share one set;
- depthwise convs (groups == in == out): input c and output c share one set;
- concat: each input shares its slice of the output;
- grouped convs that are not depthwise (the SuperTickets residual conv, gcd(inp, oup)
  groups) keep all their channels: removing one would break the group layout, and their
  zero filters stay as masked zeros for the planner;
- mul (squeeze-excitation's gate times the map): both inputs and the output share one set;
- flatten: input channel c is output channels c*hw .. c*hw+hw-1, kept or removed together;
- gather (split, chunk, channel shuffle): input channel index[j] is needed where output j is;
- layer_norm (statistics over every channel) and opaque nodes keep all their channels;
- graph inputs and outputs keep all channels.
Two validity rules keep a shape source alive, applied only at a fixpoint: a conv with a
needed output keeps at least one input channel (zero weights), and a resize keeps one
channel of the tensor it takes its size from. Sets only grow, so the loop terminates.
"""

from __future__ import annotations

import torch

from ..graph.ir import Graph, Node
from ..graph.kinds import is_conv, is_depthwise, is_layer, mixes_channels
from ..graph.shapes import channel_counts


# Ops whose every input and output channel is kept (see the module docstring).
_WHOLE = ("layer_norm", "opaque")


def _kind(n: Node) -> str:
    """How n couples its channels: "mixing" (any input channel feeds any output), "dw" (channel c
    feeds channel c), "grouped" (keeps all its channels; opaque and layer_norm nodes too), else its op."""
    if mixes_channels(n):
        return "mixing"
    if is_depthwise(n):
        return "dw"
    if is_conv(n) or n.op in _WHOLE:
        return "grouped"
    return n.op


def _couple(need: dict[str, torch.Tensor], names: list[str]) -> bool:
    s = need[names[0]].clone()
    for t in names[1:]:
        s |= need[t]
    changed = False
    for t in names:
        if not torch.equal(need[t], s):
            need[t] = s.clone()
            changed = True
    return changed


def _set(need: dict[str, torch.Tensor], name: str, mask: torch.Tensor) -> bool:
    new = need[name] | mask
    changed = not torch.equal(new, need[name])
    need[name] = new
    return changed


def _keep_shape_source(n: Node, kind: str, need: dict[str, torch.Tensor]) -> bool:
    """Run only at a fixpoint (forcing earlier would keep a channel a later read makes moot)."""
    src = None
    if kind == "mixing" and need[n.name].any():
        src = n.inputs[0]  # a conv reading nothing still takes its spatial shape from its input
    elif n.op == "resize" and len(n.inputs) == 2:
        src = n.inputs[1]  # the tensor whose size the resize copies
    if src is None or need[src].any():
        return False
    need[src][0] = True
    return True


class _DenseReads:
    """Input channels a dense layer reads from a set of its outputs, cached per layer.

    nz[o, c] (any nonzero weight of filter o on input channel c) is computed once; a layer
    whose needed outputs did not change since its last visit reads nothing new (sets only
    grow), so it is skipped.
    """

    def __init__(self) -> None:
        self.nz: dict[str, torch.Tensor] = {}
        self.seen: dict[str, torch.Tensor] = {}

    def propagate(self, n: Node, need: dict[str, torch.Tensor]) -> bool:
        rows = need[n.name]
        last = self.seen.get(n.name)
        if last is not None and torch.equal(last, rows):
            return False
        self.seen[n.name] = rows.clone()
        nz = self.nz.get(n.name)
        if nz is None:
            w = n.params["weight"]
            nz = self.nz[n.name] = w.reshape(w.shape[0], w.shape[1], -1).any(2)
        return _set(need, n.inputs[0], nz[rows].any(0))


def _propagate(n: Node, kind: str, need: dict[str, torch.Tensor], dense: _DenseReads) -> bool:
    x = n.inputs[0]
    if kind == "mixing":
        return dense.propagate(n, need)
    if kind == "grouped":
        changed = _set(need, n.name, torch.ones_like(need[n.name]))
        for i in dict.fromkeys(n.inputs):
            changed |= _set(need, i, torch.ones_like(need[i]))
        return changed
    if n.op == "flatten":
        hw = n.attrs["hw"]
        return (_set(need, x, need[n.name].view(-1, hw).any(1))
                | _set(need, n.name, need[x].repeat_interleave(hw)))
    if n.op == "gather":
        index = torch.tensor(n.attrs["index"], dtype=torch.long)
        wanted = torch.zeros_like(need[x])
        wanted[index[need[n.name]]] = True
        return _set(need, x, wanted)
    if n.op == "concat":
        changed, start = False, 0
        for i in n.inputs:
            c = need[i].shape[0]
            sl = need[n.name][start:start + c]
            s = sl | need[i]
            if not torch.equal(s, sl) or not torch.equal(s, need[i]):
                need[n.name][start:start + c] = s
                need[i] = s.clone()
                changed = True
            start += c
        return changed
    if n.op in ("add", "mul"):
        return _couple(need, [n.name, *n.inputs])
    return _couple(need, [n.name, x])  # elementwise, pooling, resize, depthwise


def _take(v: torch.Tensor, dim: int, idx: torch.Tensor) -> torch.Tensor:
    """v indexed by idx (sorted, distinct: from nonzero) along dim 0 or 1; v itself where idx
    keeps everything and indexing would only copy it (params are never edited in place, so
    sharing them is safe)."""
    if idx.numel() == v.shape[dim] and v.is_contiguous():
        return v
    return v[idx] if dim == 0 else v[:, idx]


def _prune_node(n: Node, kind: str, keep: dict[str, torch.Tensor]) -> None:
    ko = keep[n.name]
    if is_layer(n) and kind != "grouped":
        ki = keep[n.inputs[0]]
        for k in ("weight", "mask"):
            w = _take(n.params[k], 0, ko)
            n.params[k] = w if kind == "dw" else _take(w, 1, ki)
        n.params["bias"] = _take(n.params["bias"], 0, ko)
        if kind == "dw":
            n.attrs["groups"] = int(ko.numel())
    elif n.op == "scale_shift":
        n.params = {k: _take(v, 0, ko) for k, v in n.params.items()}
    elif n.op == "gather":
        position = {int(c): p for p, c in enumerate(keep[n.inputs[0]].tolist())}
        n.attrs["index"] = [position[n.attrs["index"][j]] for j in ko.tolist()]


def remove_dead_channels(graph: Graph) -> dict[str, tuple[int, int]]:
    """Drop unneeded channels in place; return {tensor: (channels before, after)} where it changed."""
    counts = channel_counts(graph)
    kinds = {n.name: _kind(n) for n in graph.nodes}
    need = {t: torch.zeros(c, dtype=torch.bool) for t, c in counts.items()}
    for t in [*graph.inputs, *graph.outputs]:
        need[t][:] = True
    changed = True
    dense = _DenseReads()
    while changed:
        changed = False
        for n in reversed(graph.nodes):
            changed |= _propagate(n, kinds[n.name], need, dense)
        if not changed:
            changed = any([_keep_shape_source(n, kinds[n.name], need) for n in graph.nodes])
    keep = {t: torch.nonzero(m).flatten() for t, m in need.items()}
    removed_nodes = set()
    for n in graph.nodes:
        if keep[n.name].numel() == 0:
            removed_nodes.add(n.name)
            continue
        if n.op == "concat":
            n.inputs = [i for i in n.inputs if keep[i].numel() > 0]
        _prune_node(n, kinds[n.name], keep)
    graph.nodes = [n for n in graph.nodes if n.name not in removed_nodes]
    for n in graph.nodes:
        assert not removed_nodes & set(n.inputs), f"dead_channels: {n.name} reads a removed tensor"
        if n.op == "concat" and len(n.inputs) == 1:
            graph.replace_uses(n.name, n.inputs[0])
    graph.remove_unused()
    return {t: (counts[t], int(keep[t].numel())) for t in counts if keep[t].numel() != counts[t]}
