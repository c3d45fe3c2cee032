"""Layer statistics shared by inspect, compact and plan: one FLOP convention everywhere.

FLOPs count a multiply-add as 2 (so GFLOP here is twice the 'GMACs' some papers print);
dense FLOPs use every weight, nonzero FLOPs only the weights the mask keeps. Biases,
activations, adds and pooling are not counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


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


def macs_per_position(weight: torch.Tensor) -> int:
    return int(weight.numel())


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
