"""Fold channels that carry a spatially uniform constant into the layers that read them.

Constant analysis: every tensor gets a per-channel vector, NaN where the channel varies
with the input and the value where it is the same at every position of every input.
Sources: a conv/linear output filter with all weights zero emits act(bias); a scale_shift
with scale 0 (an unselected channel, select.py) emits its shift. Constants pass through
scale_shift, activations, adds (when constant on every input), resizes (nearest and
bilinear interpolate a constant to itself), concat, gather, flatten, products (0 times
anything is 0), global, adaptive and window pooling (except an average that counts padded
zeros); layer_norm and opaque outputs vary.

Rewrites (all exact):
- conv2d/linear reading a constant channel c with value v: bias[o] += v * sum(W[o, c]) and
  W[o, c] = 0 (mask too), when that is uniform over space: padding 0, or v == 0. A kxk conv
  with zero padding turns a nonzero constant into a map that differs at the borders, so
  there the channel is left alone (FORMAT.md).
- add with an input constant on every channel: the input is dropped and its value added to
  the bias of another input's producer (a conv/linear without activation, or a scale_shift,
  read by nothing else); failing that the add becomes a shift-only scale_shift. When every
  input is constant, one input's producer takes the whole sum and the add goes.
After this pass the constant channels are read by nobody; dead_channels removes them.
"""

from __future__ import annotations

import torch

from ..graph.ir import Graph, Node
from ..graph.kinds import is_conv, is_layer
from ..graph.module import apply_act
from ..graph.shapes import channel_counts
from .uses import Uses

NAN = float("nan")


def _varying(n: int) -> torch.Tensor:
    return torch.full((n,), NAN, dtype=torch.float64)


def _absorb(n: Node, k: torch.Tensor) -> int:
    """Fold constant input channels into the bias of conv/linear `n`; return channels folded.

    Params are never edited in place (the pipeline shares them with its input graph): a
    weight or mask that changes is replaced by a new tensor.
    """
    bias = n.params["bias"].double()
    cand = torch.nonzero(~torch.isnan(k)).flatten()
    if is_conv(n) and n.attrs["padding"] != 0:
        cand = cand[k[cand] == 0.0]  # a kxk conv with zero padding: only zeros are uniform
    if cand.numel() == 0:
        n.params["bias"] = bias.float()
        return 0
    w, mask = n.params["weight"], n.params["mask"]
    g = n.attrs.get("groups", 1)
    per_in, per_out = w.shape[1], w.shape[0] // g
    grp, local = cand // per_in, cand % per_in
    # read[o, j]: does output o (of candidate j's group) have a nonzero weight on candidate j?
    wg = w.reshape(g, per_out, per_in, -1)
    read = wg[grp, :, local].any(-1)  # [n_cand, per_out]
    hit = read.any(1)
    if not bool(hit.any()):
        n.params["bias"] = bias.float()
        return 0
    cand, grp, local = cand[hit], grp[hit], local[hit]
    vals = k[cand]
    nz = vals != 0
    if bool(nz.any()):
        # bias[rows] += v * sum(W[rows, c]), one channel after another (the order of the sums
        # is kept, so the result is the same to the bit).
        gs, ls, vs = grp[nz].tolist(), local[nz].tolist(), vals[nz]
        if wg.shape[-1] == 1:  # 1x1 / linear: the sum over the kernel is the weight itself
            contrib = vs.view(-1, 1) * wg[grp[nz], :, local[nz]].double().sum(-1)  # (-0.0 sums to +0.0)
            for j, gi in enumerate(gs):
                bias[gi * per_out:(gi + 1) * per_out] += contrib[j]
        else:
            for gi, li, v in zip(gs, ls, vs.tolist()):
                col = w[gi * per_out:(gi + 1) * per_out, li]
                bias[gi * per_out:(gi + 1) * per_out] += v * col.double().reshape(col.shape[0], -1).sum(1)
    drop = torch.zeros(g, per_in, dtype=torch.bool)
    drop[grp, local] = True
    drop = drop.view(g, 1, per_in, *([1] * (w.dim() - 2))).expand(g, per_out, per_in, *w.shape[2:]).reshape(w.shape)
    n.params["weight"] = w.masked_fill(drop, 0)
    n.params["mask"] = mask.masked_fill(drop, 0)
    n.params["bias"] = bias.float()
    return int(cand.numel())


def _conv_out(n: Node) -> torch.Tensor:
    w = n.params["weight"]
    zero_rows = ~w.reshape(w.shape[0], -1).any(1)
    out = _varying(w.shape[0])
    if zero_rows.any():
        b = apply_act(n.params["bias"], n.attrs.get("act", "none")).double()
        out[zero_rows] = b[zero_rows]
    return out


def _fold_into_producer(graph: Graph, uses: Uses, name: str, k: torch.Tensor) -> bool:
    """Add constant k to the tensor `name` at its producer, if that changes no other reader."""
    prod = uses.producer.get(name)
    if prod is None or name in graph.outputs or uses.count(name) != 1:
        return False
    if is_layer(prod) and prod.attrs.get("act", "none") == "none":
        prod.params["bias"] = (prod.params["bias"].double() + k).float()
        return True
    if prod.op == "scale_shift":
        prod.params["shift"] = (prod.params["shift"].double() + k).float()
        return True
    return False


def _rewrite_add(graph: Graph, uses: Uses, n: Node, const: dict[str, torch.Tensor],
                 inserts: dict[int, list[Node]]) -> bool:
    full = [i for i in n.inputs if not torch.isnan(const[i]).any()]
    rest = [i for i in n.inputs if i not in full]
    if full and not rest and len(n.inputs) > 1:
        # Every input constant, yet the sum may still be needed as a map (a padded kxk conv
        # reads it): one input carries the whole constant and the others' layers can go. Best
        # is an input read elsewhere anyway (a shortcut): a shift on it costs no layer.
        shared = [i for i in full if i in graph.inputs or i in graph.outputs or uses.count(i) > 1]
        for keep in shared[:1] + [i for i in full if i not in shared]:
            k = sum(const[i] for i in full if i != keep)
            if keep in shared:
                uses.set_inputs(n, [keep])
                n.op, n.attrs, n.params = "scale_shift", {}, {"shift": k.float()}
                return True
            if _fold_into_producer(graph, uses, keep, k):
                const[keep] = const[keep] + k
                uses.set_inputs(n, [keep])
                uses.replace_uses(n.name, keep)
                return True
        return False
    if not full or not rest:
        return False
    k = sum(const[i] for i in full)
    uses.set_inputs(n, rest)
    target = next((i for i in rest if _fold_into_producer(graph, uses, i, k)), None) \
        if not bool((k == 0).all()) else rest[0]
    if target is not None:
        const[target] = const[target] + k  # keep the analysis in step with the changed bias
        if len(rest) == 1:  # x + 0: the add is the identity; remove_unused drops it
            uses.replace_uses(n.name, rest[0])
        return True
    if len(rest) == 1:
        n.op, n.attrs, n.params = "scale_shift", {}, {"shift": k.float()}
    else:  # keep the add of the varying inputs, shift its result
        pre = Node(f"{n.name}#sum", "add", rest)
        inserts.setdefault(id(n), []).append(pre)  # goes just before n (fold_constants)
        uses.add_node(pre)
        uses.set_inputs(n, [pre.name])
        n.op, n.attrs, n.params = "scale_shift", {}, {"shift": k.float()}
        const[pre.name] = _varying(k.shape[0])
    return True


def _pool_const(n: Node, k: torch.Tensor) -> torch.Tensor:
    """A window max or mean of a constant is that constant, unless an average counts padded zeros."""
    if n.attrs["mode"] == "avg" and n.attrs.get("count_include_pad", True) and any(n.attrs["padding"]):
        return torch.where(k == 0, k, _varying(k.shape[0]))
    return k


def fold_constants(graph: Graph) -> int:
    """Run the analysis and the rewrites once, in topological order; return the number of changes."""
    counts = channel_counts(graph)
    const = {i: _varying(counts[i]) for i in graph.inputs}
    changes = 0
    uses = Uses(graph)
    inserts: dict[int, list[Node]] = {}
    for n in list(graph.nodes):
        ins = [const[i] for i in n.inputs]
        if is_layer(n):
            changes += _absorb(n, ins[0])
            out = _conv_out(n)
        elif n.op == "scale_shift":
            shift = n.params["shift"].double()
            scale = n.params.get("scale")
            out = ins[0] + shift if scale is None else ins[0] * scale.double() + shift
            if scale is not None:
                out = torch.where(scale == 0, shift, out)
        elif n.op == "act":
            out = apply_act(ins[0], n.attrs["kind"])
        elif n.op == "add":
            if _rewrite_add(graph, uses, n, const, inserts):
                changes += 1
                ins = [const[i] for i in n.inputs]
                if n.op == "scale_shift":
                    const[n.name] = ins[0] + n.params["shift"].double()
                    continue
            out = sum(ins[1:], ins[0])  # NaN (varying) wins: a channel is constant only if constant everywhere
        elif n.op == "concat":
            out = torch.cat(ins)
        elif n.op in ("resize", "global_avg_pool", "adaptive_avg_pool"):
            out = ins[0]
        elif n.op == "pool":
            out = _pool_const(n, ins[0])
        elif n.op == "mul":
            a, b = ins
            out = torch.where((a == 0) | (b == 0), torch.zeros_like(a), a * b)  # 0 times anything is 0
        elif n.op == "flatten":
            out = ins[0].repeat_interleave(n.attrs["hw"])
        elif n.op == "gather":
            out = ins[0][n.attrs["index"]]
        elif n.op in ("layer_norm", "opaque"):
            out = _varying(counts[n.name])
        else:
            raise AssertionError(f"fold_const: no rule for op {n.op}")
        const[n.name] = out
    if inserts:
        graph.nodes = [m for n in graph.nodes for m in (*inserts.get(id(n), ()), n)]
    graph.remove_unused()
    return changes
