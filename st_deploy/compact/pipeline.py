"""The compaction pipeline: lowered graph -> select -> (fold_const, dead_channels, fold_bn)*.

Every pass is exact on its own (tests/compact/ checks each for equal outputs before and
after); select is exact at threshold 0. The three structural passes feed each other (a
folded BN makes zero filters, a removed channel makes a constant add foldable), so they
repeat until the graph stops changing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..graph.ir import Graph, Node
from ..graph.kinds import is_layer
from .dead_channels import remove_dead_channels
from .fold_bn import fold_batch_norms
from .fold_const import fold_constants
from .select import select_channels

MAX_ROUNDS = 20


@dataclass
class PassLog:
    unselected: dict[str, int] = field(default_factory=dict)
    constants_folded: int = 0
    channels: dict[str, tuple[int, int]] = field(default_factory=dict)
    folds: int = 0
    rounds: int = 0


def _signature(g: Graph) -> tuple:
    return tuple((n.name, n.op, tuple(n.inputs), tuple(v.shape for v in n.params.values()),
                  n.attrs.get("act")) for n in g.nodes)


def finalize_masks(graph: Graph) -> None:
    """Every conv/linear ends with `mask` = where its weight may be nonzero, weight masked."""
    for n in graph.nodes:
        if is_layer(n):
            w = n.params["weight"]
            mask = n.params.get("mask")
            mask = torch.ones_like(w) if mask is None else mask
            # A weight that became exactly zero (a folded BN scale of 0) is as good as masked.
            mask = mask * (w != 0).to(w.dtype)
            n.params["mask"] = mask
            n.params["weight"] = w * mask


def _copy_structure(graph: Graph) -> Graph:
    """A copy whose nodes, lists and dicts are new but whose tensors are shared.

    The passes never edit a tensor in place (they put new tensors in a node's params), so
    this is as good as a deep copy for them, without copying every weight.
    """
    nodes = [Node(n.name, n.op, list(n.inputs), copy.deepcopy(n.attrs), dict(n.params)) for n in graph.nodes]
    return Graph(nodes, list(graph.inputs), list(graph.outputs))


def _unshare(result: Graph, source: Graph) -> None:
    """Clone the result's tensors that are still the source's, so the two share nothing."""
    theirs = {id(v) for n in source.nodes for v in n.params.values()}
    for n in result.nodes:
        for k, v in n.params.items():
            if id(v) in theirs:
                n.params[k] = v.clone()


def run_passes(graph: Graph, threshold: float = 0.0,
               after_pass: Callable[[str, Graph], None] | None = None) -> tuple[Graph, PassLog]:
    """Compact `graph` (a copy is changed, the argument is not).

    after_pass(pass_name, graph), when given, is called after every pass: the tests use it
    to check each pass for equal outputs on its own.
    """
    def done(name: str) -> None:
        if after_pass is not None:
            after_pass(name, g)

    g = _copy_structure(graph)
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
    _unshare(g, graph)
    done("finalize_masks")
    return g, log
