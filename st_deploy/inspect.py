"""inspect: what a ticket holds, layer by layer, and what compaction can remove."""

from __future__ import annotations

from typing import Any

import torch

from .models.supertickets import InvertedResidual
from .stats import layer_stats
from .ticket import Ticket


def _branch_layers(block: InvertedResidual, b: int, block_name: str) -> dict[str, str]:
    """Layer name -> role ('expand', 'depthwise', 'project') for branch b of a block."""
    op = block.ops[b]
    dw = len(op) - 2
    names = {f"{block_name}.ops.{b}.{dw}.0": "depthwise", f"{block_name}.ops.{b}.{dw + 1}": "project"}
    if dw == 1:
        names[f"{block_name}.ops.{b}.0.0"] = "expand"
    return names


def unselected_channels(ticket: Ticket, threshold: float = 0.0) -> dict[str, tuple[str, torch.Tensor]]:
    """For SuperTickets: layer name -> (role, bool mask of its branch's unselected hidden channels)."""
    out: dict[str, tuple[str, torch.Tensor]] = {}
    if ticket.family != "supertickets":
        return out
    for name, block in ticket.module.named_modules():
        if not isinstance(block, InvertedResidual):
            continue
        for b, op in enumerate(block.ops):
            bn = op[len(op) - 2][1]
            gamma = (bn.weight * bn.weight_mask).detach()
            dead = gamma.abs() <= threshold
            for layer, role in _branch_layers(block, b, name).items():
                out[layer] = (role, dead)
    return out


def _live_nonzero(weight: torch.Tensor, role: str, dead: torch.Tensor) -> int:
    """Nonzero weights left once the branch's unselected hidden channels are removed."""
    w = weight != 0
    if role in ("expand", "depthwise"):
        return int(w[~dead].sum())
    return int(w[:, ~dead].sum())


def inspect_ticket(ticket: Ticket, threshold: float = 0.0,
                   input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    shape = tuple(input_shape or ticket.default_input_shape)
    stats = layer_stats(ticket.module, torch.zeros(shape))
    selection = unselected_channels(ticket, threshold)
    layers, compact_flops = [], 0
    modules = dict(ticket.module.named_modules())
    for s in stats:
        row = s.to_dict()
        positions = s.nonzero_flops // (2 * s.nonzero) if s.nonzero else 0
        if s.name in selection:
            role, dead = selection[s.name]
            row["role"] = role
            row["unselected"] = int(dead.sum())
            w = modules[s.name].weight * modules[s.name].weight_mask
            compact_flops += 2 * _live_nonzero(w.detach(), role, dead) * positions
        else:
            row["unselected"] = None
            compact_flops += s.nonzero_flops
        layers.append(row)
    params = sum(p.numel() for n, p in ticket.module.named_parameters() if ".bns." not in n)
    nonzero = 0
    for n, m in ticket.module.named_modules():
        if ".bns." in f".{n}.":
            continue
        for pname, p in m.named_parameters(recurse=False):
            mask = getattr(m, f"{pname}_mask", None)
            eff = p * mask if isinstance(mask, torch.Tensor) else p
            nonzero += int(torch.count_nonzero(eff))
    totals = {
        "params": params,
        "nonzero_params": nonzero,
        "gflop_dense": sum(s.flops for s in stats) / 1e9,
        "gflop_nonzero": sum(s.nonzero_flops for s in stats) / 1e9,
        "gflop_after_compaction_estimate": compact_flops / 1e9,
        "unselected_channels": sum(int(d.sum()) for r, d in selection.values() if r == "depthwise"),
    }
    # Where a loader guessed the task or the input shape, it recorded from what (None: stated by the user
    # or recorded in a packed ticket).
    shape_from = "given" if input_shape else ticket.config.get("input_shape_from")
    return {
        "ticket": ticket.name, "family": ticket.family, "task": ticket.task,
        "task_from": ticket.config.get("task_from"), "variant": ticket.config.get("variant"),
        "input_shape": list(shape), "input_shape_from": shape_from, "threshold": threshold,
        "flop_convention": "2 FLOPs per multiply-add; conv and linear layers only",
        "layers": layers, "totals": totals,
    }

