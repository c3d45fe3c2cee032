"""An in-memory pruned nn.Module -> Ticket (no file, no factory).

Accepted masks, per nn.Conv2d / nn.Linear: torch.nn.utils.prune's form (weight_orig parameter,
weight_mask buffer and a forward pre-hook) or a `weight_mask` buffer beside `weight`. The user's
module is never changed: the ticket holds a copy whose masked weights are multiplied out, each
mask kept as a `weight_mask` buffer (the generic loader's contract, loaders/masked.py).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from ..errors import DeployError
from ..ticket import DEFAULT_INPUT_SHAPES, Ticket


def _fold_prune_hooks(module: nn.Module) -> None:
    """Make torch.nn.utils.prune's reparametrisation permanent, keeping each mask as a buffer."""
    for m in module.modules():
        hooks = [h for h in m._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
        for h in hooks:
            name = h._tensor_name
            mask = getattr(m, f"{name}_mask").detach().clone()
            prune.remove(m, name)
            if name == "weight":
                m.register_buffer("weight_mask", mask)


def _computed_weights(module: nn.Module) -> list[torch.Tensor]:
    out = []
    for m in module.modules():
        for h in m._forward_pre_hooks.values():
            if isinstance(h, prune.BasePruningMethod):
                t = getattr(m, h._tensor_name, None)
                if isinstance(t, torch.Tensor) and not t.is_leaf:
                    out.append(t)
    return out


def ticket_from_module(module: nn.Module, input_shape: tuple[int, ...] | None = None,
                       example_input: torch.Tensor | None = None, task: str = "classification",
                       name: str | None = None) -> Ticket:
    """A Ticket computing what `module` computes in eval mode, at `input_shape` (N, C, H, W) or the
    shape of `example_input` (default: the task's usual shape)."""
    if not isinstance(module, nn.Module):
        raise DeployError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
            raise DeployError("example_input must be an N, C, H, W tensor")
        input_shape = tuple(example_input.shape)
    shape = tuple(int(d) for d in (input_shape or DEFAULT_INPUT_SHAPES.get(task, (1, 3, 224, 224))))
    if len(shape) != 4 or min(shape) < 1:
        raise DeployError(f"input_shape {shape}: expected four positive ints (N, C, H, W)")
    # A pruned layer's `weight` is computed by its hook (orig * mask), not a leaf, and deepcopy
    # refuses it: the copy gets a detached one (prune.remove recomputes it anyway).
    memo = {id(t): t.detach().clone() for t in _computed_weights(module)}
    m = copy.deepcopy(module, memo).eval()
    _fold_prune_hooks(m)
    with torch.no_grad():
        for layer_name, layer in m.named_modules():
            mask = getattr(layer, "weight_mask", None)
            if not isinstance(layer, (nn.Conv2d, nn.Linear)) or not isinstance(mask, torch.Tensor):
                continue
            if mask.shape != layer.weight.shape:
                raise DeployError(f"{layer_name}.weight_mask has shape {tuple(mask.shape)}, the weight has "
                                  f"{tuple(layer.weight.shape)}")
            mask = (mask != 0).to(layer.weight.dtype)
            layer.weight.mul_(mask)
            layer.weight_mask = mask
    label = name or type(module).__name__
    return Ticket(module=m, family="masked", config={"model": f"in-memory {type(module).__name__}", "kwargs": {}},
                  task=task, default_input_shape=shape, name=label)


def is_module(obj: Any) -> bool:
    return isinstance(obj, nn.Module)
