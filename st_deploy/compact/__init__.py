"""Exact compaction: a Ticket -> a smaller Ticket computing the same function.

Needs: a ticket whose module is a SuperTickets HighResolutionNet, a model of standard torch
layers traceable by torch.fx (masks as `weight_mask` buffers, weights already masked), or
an earlier compact ticket (GraphModule).
Promises: `compact(t).ticket` is a GraphModule ticket with unselected channels, dead
branches/blocks and mask-dead channels removed, BN folded, every conv/linear carrying its
remaining unstructured mask; at threshold 0 its outputs equal the ticket's in fp32 (the
report's measured error says by how much they differ on a seeded input).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import DeployError
from ..graph.fidelity import compare, reference_outputs, seeded_input
from ..graph.ir import Graph
from ..graph.module import GraphModule
from ..graph.opaque import opaque_ops
from ..graph.validate import validate_graph_dict
from ..models.supertickets import HighResolutionNet
from ..ticket import Ticket
from .lower_fx import lower_fx
from .lower_supertickets import lower_supertickets
from .pipeline import run_passes
from .report import build_report

__all__ = ["Compacted", "compact", "lower", "measure_error"]

CHECK_SIZE = 64  # spatial size of the seeded error check (fast; exactness does not depend on it)


@dataclass(frozen=True)
class Compacted:
    ticket: Ticket
    graph: Graph
    report: dict[str, Any]


def lower(ticket: Ticket) -> Graph:
    """The ticket's module as a Graph, before any pass."""
    m = ticket.module
    if isinstance(m, HighResolutionNet):
        return lower_supertickets(m)
    if isinstance(m, GraphModule):
        return m.to_graph()
    graph, _ = lower_fx(m, tuple(ticket.default_input_shape))
    return graph


def shape_specific(graph: Graph) -> bool:
    """Whether the graph holds only at the input size it was lowered at."""
    return any((n.op == "flatten" and n.attrs["hw"] > 1) or n.op in ("adaptive_avg_pool", "opaque")
               or (n.op == "resize" and "size" in n.attrs) for n in graph.nodes)


def check_shape(ticket: Ticket, shape_specific: bool = False) -> tuple[int, int, int, int]:
    n, c, h, w = ticket.default_input_shape
    if shape_specific:  # the graph holds at the lowering's input size only (a flatten before a Linear, ...)
        return (1, c, h, w)
    return (1, c, min(h, CHECK_SIZE), min(w, CHECK_SIZE))


def measure_error(reference: torch.nn.Module, candidate: torch.nn.Module, shape: tuple[int, ...],
                  seed: int = 0) -> dict[str, Any]:
    """max_abs and max_rel (graph.fidelity's rel) on the seeded input, and max|reference|."""
    x = seeded_input(shape, seed)
    ys, zs = reference_outputs(reference.eval(), x), reference_outputs(candidate.eval(), x)
    if [y.shape for y in ys] != [z.shape for z in zs]:
        raise AssertionError(f"compact: output shapes changed ({[y.shape for y in ys]} vs {[z.shape for z in zs]})")
    fid = compare(ys, zs)
    scale = max(float(np.abs(y).max()) if y.size else 0.0 for y in ys)
    return {"input_shape": list(shape), "seed": seed, "max_abs": fid["max_abs"], "max_rel": fid["rel"],
            "max_abs_reference": scale}


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch ops single-threaded, restoring the thread count after.

    Compaction is thousands of small and medium tensor ops (and a forward pass on a 64x64
    input): intra-op threads gain little there, and on a busy machine every parallel region
    waits for a descheduled worker, which made compact() 10-30x slower. The results do not
    depend on it (the passes' arithmetic is elementwise or exact; the error check's
    convolutions may round differently in the last bits).
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def compact(ticket: Ticket, threshold: float = 0.0, seed: int = 0) -> Compacted:
    """Compact `ticket`; threshold > 0 also drops channels with 0 < |gamma| <= threshold (approximate)."""
    if not isinstance(threshold, (int, float)) or not threshold >= 0:
        raise DeployError(f"compact: threshold must be a number >= 0, got {threshold!r}")
    with _one_thread():
        return _compact(ticket, float(threshold), seed)


def _compact(ticket: Ticket, threshold: float, seed: int) -> Compacted:
    before = lower(ticket)
    after, log = run_passes(before, float(threshold))
    try:
        validate_graph_dict(after.to_dict())
    except DeployError as e:  # the input was valid, so an invalid result is our bug
        raise AssertionError(f"compact produced an invalid graph: {e}") from None
    module = GraphModule(after)
    small = check_shape(ticket, shape_specific(before))
    try:
        error = measure_error(ticket.module, module, small, seed)
    except RuntimeError:  # a net too deep for the small check input (Inception needs 75x75): the real size
        error = measure_error(ticket.module, module, check_shape(ticket, True), seed)
    report = build_report(ticket.module, before, after, tuple(ticket.default_input_shape), log, error,
                          float(threshold), ticket.family)
    report["opaque_ops"] = opaque_ops(after)
    new = ticket.replace(module=module, family="compact",
                         config={"graph_source_family": ticket.family, "threshold": float(threshold)})
    return Compacted(ticket=new, graph=after, report=report)
