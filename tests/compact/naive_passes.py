"""The compaction passes as first written: straightforward fixed-point iterations.

Each function is the original, unoptimised version of a pass in st_deploy/compact/: every
rewrite rescans the whole graph (Graph.producers/consumers/replace_uses), fold_bn restarts
from the first node after each fold, dead_channels recomputes every layer's reads on every
sweep, and run_passes deep-copies its input. Slow (quadratic) but obviously right; the
equivalence tests check the optimised passes give the same graph, tensor for tensor.
Keep in step with a deliberate change of a pass's rules.
"""

from __future__ import annotations

from typing import Callable

import torch

from st_deploy.compact.pipeline import MAX_ROUNDS, PassLog, _signature, finalize_masks
from st_deploy.compact.select import select_channels
from st_deploy.graph.ir import Graph, Node
from st_deploy.graph.module import apply_act
from st_deploy.graph.shapes import channel_counts


# ---- fold_bn ----
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
        elif (n.op == "act" and n.attrs["kind"] in ("relu", "relu6", "swish", "hswish")
              and p.op in ("conv2d", "linear") and p.attrs.get("act", "none") == "none"):
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


# ---- fold_const ----
NAN = float("nan")


def _varying(n: int) -> torch.Tensor:
    return torch.full((n,), NAN, dtype=torch.float64)


def _fc_absorb(n: Node, k: torch.Tensor) -> int:
    """Fold constant input channels into the bias of conv/linear `n`; return channels folded."""
    w, mask = n.params["weight"], n.params["mask"]
    g = n.attrs.get("groups", 1)
    per_in, per_out = w.shape[1], w.shape[0] // g
    uniform_any = n.op == "linear" or n.attrs["padding"] == 0
    bias = n.params["bias"].double()
    folded = 0
    for c in torch.nonzero(~torch.isnan(k)).flatten().tolist():
        v = float(k[c])
        if not (uniform_any or v == 0.0):
            continue
        grp, local = divmod(c, per_in)
        rows = slice(grp * per_out, (grp + 1) * per_out)
        col = w[rows, local]
        if not bool((col != 0).any()):
            continue
        if v != 0.0:
            bias[rows] += v * col.double().reshape(col.shape[0], -1).sum(1)
        w[rows, local] = 0
        mask[rows, local] = 0
        folded += 1
    n.params["bias"] = bias.float()
    return folded


def _conv_out(n: Node) -> torch.Tensor:
    w = n.params["weight"]
    zero_rows = (w.reshape(w.shape[0], -1) == 0).all(1)
    out = _varying(w.shape[0])
    if zero_rows.any():
        b = apply_act(n.params["bias"], n.attrs.get("act", "none")).double()
        out[zero_rows] = b[zero_rows]
    return out


def _fold_into_producer(graph: Graph, name: str, k: torch.Tensor) -> bool:
    """Add constant k to the tensor `name` at its producer, if that changes no other reader."""
    prod = graph.producers().get(name)
    if prod is None or name in graph.outputs or len(graph.consumers().get(name, [])) != 1:
        return False
    if prod.op in ("conv2d", "linear") and prod.attrs.get("act", "none") == "none":
        prod.params["bias"] = (prod.params["bias"].double() + k).float()
        return True
    if prod.op == "scale_shift":
        prod.params["shift"] = (prod.params["shift"].double() + k).float()
        return True
    return False


def _rewrite_add(graph: Graph, n: Node, const: dict[str, torch.Tensor]) -> bool:
    full = [i for i in n.inputs if not torch.isnan(const[i]).any()]
    rest = [i for i in n.inputs if i not in full]
    if full and not rest and len(n.inputs) > 1:
        # Every input constant, yet the sum may still be needed as a map (a padded kxk conv
        # reads it): one input carries the whole constant and the others' layers can go. Best
        # is an input read elsewhere anyway (a shortcut): a shift on it costs no layer.
        consumers = graph.consumers()
        shared = [i for i in full if i in graph.inputs or i in graph.outputs or len(consumers.get(i, [])) > 1]
        for keep in shared[:1] + [i for i in full if i not in shared]:
            k = sum(const[i] for i in full if i != keep)
            if keep in shared:
                n.op, n.inputs, n.attrs, n.params = "scale_shift", [keep], {}, {"shift": k.float()}
                return True
            if _fold_into_producer(graph, keep, k):
                const[keep] = const[keep] + k
                n.inputs = [keep]
                graph.replace_uses(n.name, keep)
                return True
        return False
    if not full or not rest:
        return False
    k = sum(const[i] for i in full)
    n.inputs = rest
    target = next((i for i in rest if _fold_into_producer(graph, i, k)), None) \
        if not bool((k == 0).all()) else rest[0]
    if target is not None:
        const[target] = const[target] + k  # keep the analysis in step with the changed bias
        if len(rest) == 1:  # x + 0: the add is the identity; remove_unused drops it
            graph.replace_uses(n.name, rest[0])
        return True
    if len(rest) == 1:
        n.op, n.attrs, n.params = "scale_shift", {}, {"shift": k.float()}
    else:  # keep the add of the varying inputs, shift its result
        pre = Node(f"{n.name}#sum", "add", rest)
        graph.nodes.insert(graph.nodes.index(n), pre)
        n.op, n.inputs, n.attrs, n.params = "scale_shift", [pre.name], {}, {"shift": k.float()}
        const[pre.name] = _varying(k.shape[0])
    return True


def fold_constants(graph: Graph) -> int:
    """Run the analysis and the rewrites once, in topological order; return the number of changes."""
    counts = channel_counts(graph)
    const = {i: _varying(counts[i]) for i in graph.inputs}
    changes = 0
    for n in list(graph.nodes):
        ins = [const[i] for i in n.inputs]
        if n.op in ("conv2d", "linear"):
            changes += _fc_absorb(n, ins[0])
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
            if _rewrite_add(graph, n, const):
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
            padded_mean = n.attrs["mode"] == "avg" and n.attrs.get("count_include_pad", True) \
                and max(n.attrs["padding"]) > 0
            out = ins[0].clone()
            if padded_mean:
                out[out != 0] = float("nan")
        elif n.op == "mul":
            out = ins[0] * ins[1]
            out[(ins[0] == 0) | (ins[1] == 0)] = 0.0
        elif n.op == "flatten":
            out = torch.stack([ins[0]] * n.attrs["hw"], 1).flatten()
        elif n.op == "gather":
            out = torch.stack([ins[0][i] for i in n.attrs["index"]])
        elif n.op in ("layer_norm", "opaque"):
            out = _varying(counts[n.name])
        else:
            raise AssertionError(f"fold_const: no rule for op {n.op}")
        const[n.name] = out
    graph.remove_unused()
    return changes


# ---- dead_channels ----
def _kind(n: Node, counts: dict[str, int]) -> str:
    if n.op == "linear":
        return "dense"
    if n.op in ("layer_norm", "opaque"):
        return "grouped"
    if n.op != "conv2d":
        return n.op
    g = n.attrs["groups"]
    if g == 1:
        return "dense"
    if g == counts[n.inputs[0]] == counts[n.name]:
        return "depthwise"
    return "grouped"


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
    if kind == "dense" and need[n.name].any():
        src = n.inputs[0]  # a conv reading nothing still takes its spatial shape from its input
    elif n.op == "resize" and len(n.inputs) == 2:
        src = n.inputs[1]  # the tensor whose size the resize copies
    if src is None or need[src].any():
        return False
    need[src][0] = True
    return True


def _propagate(n: Node, kind: str, need: dict[str, torch.Tensor]) -> bool:
    x = n.inputs[0]
    if kind == "dense":
        w = n.params["weight"]
        rows = need[n.name]
        read = (w[rows] != 0).sum(dim=[d for d in range(w.dim()) if d != 1]) > 0
        return _set(need, x, read)
    if kind == "grouped":
        changed = _set(need, n.name, torch.ones_like(need[n.name]))
        for i in n.inputs:
            changed |= _set(need, i, torch.ones_like(need[i]))
        return changed
    if n.op == "flatten":
        hw = n.attrs["hw"]
        changed = False
        for c in range(need[x].shape[0]):
            group = need[n.name][c * hw:(c + 1) * hw]
            if bool(group.any()) or bool(need[x][c]):
                if not bool(group.all()) or not bool(need[x][c]):
                    changed = True
                need[n.name][c * hw:(c + 1) * hw] = True
                need[x][c] = True
        return changed
    if n.op == "gather":
        changed = False
        for j, i in enumerate(n.attrs["index"]):
            if bool(need[n.name][j]) and not bool(need[x][i]):
                need[x][i] = True
                changed = True
        return changed
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


def _prune_node(n: Node, kind: str, keep: dict[str, torch.Tensor]) -> None:
    ko = keep[n.name]
    if n.op in ("conv2d", "linear") and kind != "grouped":
        ki = keep[n.inputs[0]]
        for k in ("weight", "mask"):
            w = n.params[k][ko]
            n.params[k] = w if kind == "depthwise" else w[:, ki]
        n.params["bias"] = n.params["bias"][ko]
        if kind == "depthwise":
            n.attrs["groups"] = int(ko.numel())
    elif n.op == "scale_shift":
        n.params = {k: v[ko] for k, v in n.params.items()}
    elif n.op == "gather":
        kept_inputs = keep[n.inputs[0]].tolist()
        n.attrs["index"] = [kept_inputs.index(n.attrs["index"][j]) for j in ko.tolist()]


def remove_dead_channels(graph: Graph) -> dict[str, tuple[int, int]]:
    """Drop unneeded channels in place; return {tensor: (channels before, after)} where it changed."""
    counts = channel_counts(graph)
    kinds = {n.name: _kind(n, counts) for n in graph.nodes}
    need = {t: torch.zeros(c, dtype=torch.bool) for t, c in counts.items()}
    for t in [*graph.inputs, *graph.outputs]:
        need[t][:] = True
    changed = True
    while changed:
        changed = False
        for n in reversed(graph.nodes):
            changed |= _propagate(n, kinds[n.name], need)
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


# ---- pipeline ----
def naive_run_passes(graph: Graph, threshold: float = 0.0,
                     after_pass: Callable[[str, Graph], None] | None = None) -> tuple[Graph, PassLog]:
    """Compact `graph` (a copy is changed, the argument is not).

    after_pass(pass_name, graph), when given, is called after every pass: the tests use it
    to check each pass for equal outputs on its own.
    """
    def done(name: str) -> None:
        if after_pass is not None:
            after_pass(name, g)

    g = graph.clone()
    log = PassLog(unselected=select_channels(g, threshold))
    done("select")
    before = {}
    sig = None
    for log.rounds in range(1, MAX_ROUNDS + 1):
        folded = fold_constants(g)
        done("fold_const")
        for t, (a, b) in remove_dead_channels(g).items():
            before.setdefault(t, a)
            log.channels[t] = (before[t], b)
        done("dead_channels")
        fired = fold_batch_norms(g)
        done("fold_bn")
        log.constants_folded += folded
        log.folds += fired
        new = _signature(g)
        if new == sig and not folded and not fired:
            break
        sig = new
    finalize_masks(g)
    done("finalize_masks")
    return g, log
