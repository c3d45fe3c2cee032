"""inspect: what a ticket holds, layer by layer, and what compaction can remove.

FLOPs count a multiply-add as 2 (so GFLOP here is twice the 'GMACs' some papers print);
dense FLOPs use every weight, nonzero FLOPs only the weights the mask keeps. Biases,
activations, adds and pooling are not counted (compaction's report, compact/report.py, counts
the compacted graph the same way).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .models.supertickets import InvertedResidual
from .ticket import Ticket


@dataclass
class LayerStats:
    name: str
    op: str  # "conv1x1", "conv3x3", "dw3x3", "gconv1x1", "linear", ...
    shape: tuple[int, ...]
    params: int
    nonzero: int
    out_hw: tuple[int, int]
    flops: int
    nonzero_flops: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.params if self.params else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sparsity"] = round(self.sparsity, 6)
        return d


def op_kind(layer: nn.Module) -> str:
    if isinstance(layer, nn.Linear):
        return "linear"
    k = layer.kernel_size[0]
    if layer.groups > 1 and layer.groups == layer.in_channels == layer.out_channels:
        return f"dw{k}x{k}"
    prefix = "gconv" if layer.groups > 1 else "conv"
    return f"{prefix}{k}x{k}"


def effective_weight(layer: nn.Module) -> torch.Tensor:
    mask = getattr(layer, "weight_mask", None)
    return layer.weight * mask if isinstance(mask, torch.Tensor) else layer.weight


def layer_stats(module: nn.Module, x: torch.Tensor) -> list[LayerStats]:
    """Run `module` once on `x`, recording every Conv2d/Linear's output size and weight counts."""
    records: list[LayerStats] = []
    hooks = []

    def hook(name: str):
        def fn(layer: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            w = effective_weight(layer).detach()
            positions = out.shape[0] * (out.shape[2] * out.shape[3] if out.dim() == 4 else 1)
            hw = (int(out.shape[2]), int(out.shape[3])) if out.dim() == 4 else (1, 1)
            nnz = int(torch.count_nonzero(w))
            records.append(LayerStats(name, op_kind(layer), tuple(w.shape), w.numel(), nnz, hw,
                                      2 * w.numel() * positions, 2 * nnz * positions))
        return fn

    for name, layer in module.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            hooks.append(layer.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in hooks:
            h.remove()
    return records


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

