"""The built-in example ticket: the paper's ImageNet supernet with a random selection and 90 % masks.

It is made to look like a trained ticket rather than an easy one: kaiming fan-in weights,
BN affine in the ranges SuperTickets' samples use, BN statistics calibrated on random
inputs, and masks from one global magnitude threshold over all masked convs (SuperTickets'
global pruner scope), which leaves 1x1 convs ~92 % and depthwise convs ~35-75 % sparse.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from .errors import DeployError
from .io.atomic import atomic_dir
from .models.supertickets import (HighResolutionNet, InvertedResidual, MaskedBatchNorm2d,
                                  MaskedConv2d, supernet_arch)

EXAMPLE_NAME = "supertickets_imagenet_g0.9"

# configs/cls_imagenet_g_0.9.yml of the SuperTickets code (FORMAT.md lists it).
IMAGENET_KWPARAMS = {
    "active_fn": "nn.ReLU", "num_classes": 1000, "width_mult": 1.0, "round_nearest": 2,
    "input_stride": 4, "bn_momentum": 0.01, "bn_epsilon": 0.001, "input_channel": [24, 24],
    "last_channel": 1600, "expand_ratio": 4, "kernel_sizes": [3, 5, 7],
    "inverted_residual_setting": [[1, [1], [24]], [2, [2, 2], [18, 36]], [3, [2, 2, 3], [18, 36, 72]],
                                  [4, [2, 2, 3, 4], [18, 36, 72, 144]], [4, [2, 2, 3, 4], [18, 36, 72, 144]]],
    "head_channels": [36, 72, 144, 320], "task": "classification",
}


def _uniform(g: torch.Generator, shape, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(shape, generator=g) * (hi - lo) + lo


def init_weights(model: nn.Module, g: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            m.weight.copy_(_uniform(g, m.weight.shape, -bound, bound))
            m.bias.copy_(_uniform(g, m.bias.shape, -bound, bound))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(_uniform(g, m.weight.shape, 0.5, 1.5))
            m.bias.copy_(_uniform(g, m.bias.shape, -0.1, 0.1))


def select(model: HighResolutionNet, g: torch.Generator, p_dead_branch: float = 0.3,
           p_dead_block: float = 0.05) -> dict[str, list[int]]:
    """Unselect channels the way network slimming leaves them: gamma 0, beta kept."""
    live: dict[str, list[int]] = {}
    for name, block in model.named_modules():
        if not isinstance(block, InvertedResidual) or not len(block.ops):
            continue
        dead_block = torch.rand(1, generator=g).item() < p_dead_block
        counts = []
        for op in block.ops:
            bn = op[-2][1]  # the depthwise ConvBNReLU's BN is the selection BN
            h = bn.num_features
            if dead_block or torch.rand(1, generator=g).item() < p_dead_branch:
                keep = 0
            else:
                keep = max(1, int(round(h * _uniform(g, (1,), 0.15, 0.9).item())))
            chosen = torch.randperm(h, generator=g)[:keep]
            gamma = torch.zeros(h)
            gamma[chosen] = bn.weight[chosen]
            bn.weight.copy_(gamma)
            counts.append(keep)
        live[name] = counts
    return live


def global_magnitude_masks(model: nn.Module, sparsity: float) -> float:
    """One threshold over |w| of every masked conv (SuperTickets' global scope); returns it."""
    convs = [m for m in model.modules() if isinstance(m, MaskedConv2d)]
    scores = torch.cat([m.weight.detach().abs().flatten() for m in convs])
    k = int(round(sparsity * scores.numel()))
    if k == 0:
        return 0.0
    threshold = torch.kthvalue(scores, k).values.item()
    for m in convs:
        m.weight_mask.copy_((m.weight.abs() > threshold).float())
    return threshold


def calibrate_bn(model: nn.Module, g: torch.Generator, batches: int = 3, batch: int = 4,
                 size: int = 160) -> None:
    """Running statistics from random inputs (cumulative average over the batches)."""
    bns = [m for m in model.modules() if isinstance(m, MaskedBatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for _ in range(batches):
        model(torch.randn((batch, 3, size, size), generator=g))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def build_example(seed: int = 0, sparsity: float = 0.9, kwparams: dict | None = None) -> HighResolutionNet:
    params = dict(kwparams or IMAGENET_KWPARAMS)
    g = torch.Generator().manual_seed(seed)
    model = HighResolutionNet(params, supernet_arch(params))
    with torch.no_grad():
        init_weights(model, g)
        select(model, g)
        global_magnitude_masks(model, sparsity)
        calibrate_bn(model, g)
    return model.eval()


def make_example(out: str | Path, seed: int = 0, sparsity: float = 0.9, force: bool = False,
                 kwparams: dict | None = None, name: str = EXAMPLE_NAME) -> Path:
    """Write X.state_dict, X.yml, X.json into `out` (atomically); returns the X.state_dict path."""
    if not 0.0 <= sparsity < 1.0:
        raise DeployError(f"--sparsity {sparsity}: must be in [0, 1)")
    out = Path(out)
    params = dict(kwparams or IMAGENET_KWPARAMS)
    model = build_example(seed, sparsity, params)
    with atomic_dir(out, force=force) as tmp:
        torch.save(model.state_dict(), tmp / f"{name}.state_dict")
        (tmp / f"{name}.yml").write_text(repr(params))
        (tmp / f"{name}.json").write_text(json.dumps(params["inverted_residual_setting"]))
    return out / f"{name}.state_dict"
