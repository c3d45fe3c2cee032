"""Generic masked PyTorch models: a state_dict plus a factory that builds the nn.Module.

Accepted state_dict forms, per conv/linear layer L:
  torch.nn.utils.prune form   L.weight_orig + L.weight_mask  (effective weight = orig * mask)
  mask-buffer form            L.weight + L.weight_mask       (effective weight = weight * mask)
  plain                       L.weight                       (dense layer, no mask)
The loaded module is the factory's module with every masked weight multiplied out and the
mask kept as a `weight_mask` buffer, so it computes exactly what the pruned model computes.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import DeployError
from ..ticket import DEFAULT_INPUT_SHAPES, Ticket
from .checks import as_state_dict, load_checked, read_tensors_only, sha256_of

# Factories we may import on the say-so of a ticket file; anything else needs --model.
TRUSTED_PREFIX = "st_deploy.models."


def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """'package.module:callable' -> the callable (imports the user's module)."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise DeployError(f"--model {spec!r}: expected 'package.module:factory'")
    mod_name, attr = spec.split(":")
    if mod_name.split(".")[0] in ("torchvision", "timm"):
        # PyPI's torchvision needs a shim beside our CPU torch (timm imports torchvision).
        from ..models.torchvision_compat import import_torchvision
        import_torchvision()
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise DeployError(f"--model {spec!r}: cannot import {mod_name!r} ({e})") from None
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise DeployError(f"--model {spec!r}: {mod_name} has no callable {attr!r}")
    return factory


def build_module(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    factory = resolve_factory(spec)
    try:
        module = factory(**kwargs)
    except TypeError as e:
        raise DeployError(f"--model {spec!r}: factory rejected arguments {kwargs} ({e})") from None
    if not isinstance(module, nn.Module):
        raise DeployError(f"--model {spec!r}: factory returned {type(module).__name__}, not an nn.Module")
    return module


def masked_layers(module: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def attach_masks(module: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Multiply each mask into its layer's weight and keep it as a weight_mask buffer."""
    layers = masked_layers(module)
    for name, mask in masks.items():
        layer = layers[name]
        with torch.no_grad():
            layer.weight.mul_(mask)
        if "weight_mask" in layer._buffers:
            layer.weight_mask = mask.clone()
        else:
            layer.register_buffer("weight_mask", mask.clone())
    return module


def split_masks(sd: dict[str, torch.Tensor], module: nn.Module, path: Path
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Normalise any accepted form to (plain state_dict with effective weights, masks by layer)."""
    layers = masked_layers(module)
    plain, masks = {}, {}
    for key, value in sd.items():
        if key.endswith(".weight_mask") or key.endswith(".bias_mask"):
            continue
        if key.endswith(".weight_orig"):
            plain[key[: -len("_orig")]] = value
        elif key.endswith(".bias_orig"):
            plain[key[: -len("_orig")]] = value
        else:
            plain[key] = value
    for key, value in sd.items():
        if key.endswith(".bias_mask"):
            target = key[: -len("_mask")]
            if target in plain and plain[target].shape == value.shape:
                plain[target] = plain[target] * value
            continue
        if not key.endswith(".weight_mask"):
            continue
        layer_name = key[: -len(".weight_mask")]
        if layer_name not in layers:
            raise DeployError(f"{path}: mask {key!r} belongs to no Conv2d/Linear layer of the model")
        weight = plain.get(layer_name + ".weight")
        if weight is None:
            raise DeployError(f"{path}: mask {key!r} has no weight ({layer_name}.weight or .weight_orig)")
        if tuple(value.shape) != tuple(weight.shape):
            raise DeployError(f"{path}: mask {key!r} has shape {tuple(value.shape)}, the weight has "
                              f"{tuple(weight.shape)}")
        if not value.is_floating_point() and value.dtype != torch.bool:
            value = value.float()
        value = value.float()
        if not torch.isfinite(value).all() or not ((value == 0) | (value == 1)).all():
            raise DeployError(f"{path}: mask {key!r} is not binary (values other than 0 and 1)")
        masks[layer_name] = value
    return plain, masks


def load_masked(path: Path, model: str, model_kwargs: dict[str, Any] | None = None,
                task: str = "classification", input_shape: tuple[int, ...] | None = None) -> Ticket:
    kwargs = dict(model_kwargs or {})
    module = build_module(model, kwargs)
    sd = as_state_dict(read_tensors_only(path), path)
    plain, masks = split_masks(sd, module, path)
    # Strict key/shape checks run against the module before masks are attached.
    load_checked(module, plain, path)
    attach_masks(module, masks)
    return Ticket(
        module=module.eval(), family="masked",
        config={"model": model, "kwargs": kwargs}, task=task,
        default_input_shape=tuple(input_shape or DEFAULT_INPUT_SHAPES[task]),
        source=str(path), sha256=sha256_of(path), name=path.stem,
    )


def from_module(module: nn.Module, model: str, kwargs: dict[str, Any] | None = None,
                task: str = "classification", name: str = "model",
                input_shape: tuple[int, ...] | None = None) -> Ticket:
    """A Ticket from an in-memory module already carrying weight_mask buffers (or prune hooks)."""
    sd = {k: v.detach().clone() for k, v in module.state_dict().items()}
    fresh = build_module(model, dict(kwargs or {})) if model else module
    plain, masks = split_masks(sd, fresh, Path(name))
    load_checked(fresh, plain, Path(name))
    attach_masks(fresh, masks)
    return Ticket(module=fresh.eval(), family="masked", config={"model": model, "kwargs": dict(kwargs or {})},
                  task=task, default_input_shape=tuple(input_shape or DEFAULT_INPUT_SHAPES[task]), name=name)


def factory_kwargs_ok(spec: str) -> bool:
    """Whether the factory can be imported without the user naming it (our own zoo)."""
    return spec.startswith(TRUSTED_PREFIX)

