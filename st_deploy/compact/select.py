"""Apply the SuperTickets selection threshold to the selection BNs (FORMAT.md).

A hidden channel c is unselected when |gamma_c| <= threshold. Its selection BN is then
taken to emit the constant beta_c: scale_c = 0, shift_c = beta_c. With threshold 0 this
changes nothing (gamma_c = 0 already gives scale 0 and shift beta_c), so the pass is exact;
with threshold > 0 it is the approximation SuperTickets makes, and compact() measures it.
Later passes (fold_const, dead_channels) then fold the constants and drop the channels.
"""

from __future__ import annotations

import torch

from ..graph.ir import Graph


def select_channels(graph: Graph, threshold: float = 0.0) -> dict[str, int]:
    """Zero the scale of unselected channels; return {selection node: number unselected}."""
    unselected = {}
    for n in graph.nodes:
        if n.op != "scale_shift" or n.attrs.get("role") != "selection":
            continue
        gamma, beta = n.params.pop("gamma"), n.params.pop("beta")
        n.attrs.pop("role")
        off = gamma.abs() <= threshold
        if off.any():
            n.params["scale"] = torch.where(off, torch.zeros_like(gamma), n.params["scale"])
            n.params["shift"] = torch.where(off, beta, n.params["shift"])
        unselected[n.name] = int(off.sum())
    return unselected
