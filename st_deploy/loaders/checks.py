"""Checks every loader applies to an untrusted state_dict before building a module from it."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DeployError


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_tensors_only(path: Path) -> Any:
    """torch.load with weights_only=True, every failure turned into a one-line DeployError."""
    if not path.is_file():
        raise DeployError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in str(e):
            raise DeployError(
                f"{path}: refused to unpickle: the file holds Python objects, not only tensors, and a "
                f"pickled model is never unpickled (it could run code); give a SuperTickets "
                f"X.state_dict + X.yml, a ticket.pt from `st-deploy pack`, or a state_dict with --model"
            ) from None
        raise DeployError(f"{path}: not a readable torch file ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError,
            IndexError, TypeError, AttributeError, UnicodeDecodeError, MemoryError,
            OverflowError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeployError(f"{path}: not a readable torch file, truncated or corrupt ({msg[:200]})") from None


def as_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict):
        raise DeployError(f"{path}: expected a state_dict (a dict of tensors), found {type(obj).__name__}")
    for k, v in obj.items():
        if not isinstance(k, str):
            raise DeployError(f"{path}: state_dict key {k!r} is not a string")
        if not isinstance(v, torch.Tensor):
            raise DeployError(f"{path}: state_dict entry {k!r} is a {type(v).__name__}, not a tensor")
    return obj


def check_against_module(sd: dict[str, torch.Tensor], module: nn.Module, path: Path) -> None:
    """Same keys, same shapes, float parameters, finite values, binary masks."""
    expected = module.state_dict()
    for k, v in expected.items():
        if k not in sd:
            raise DeployError(f"{path}: key {k!r} expected by the configuration is missing "
                              f"(shape {tuple(v.shape)})")
    for k in sd:
        if k not in expected:
            raise DeployError(f"{path}: key {k!r} does not fit the configuration "
                              f"(no such parameter or buffer in the model it describes)")
    for k, v in expected.items():
        got = sd[k]
        if tuple(got.shape) != tuple(v.shape):
            raise DeployError(f"{path}: {k!r} has shape {tuple(got.shape)}, the configuration "
                              f"needs {tuple(v.shape)}")
        if v.is_floating_point() != got.is_floating_point() or got.is_complex():
            raise DeployError(f"{path}: {k!r} has dtype {got.dtype}, expected {v.dtype}")
        if got.is_floating_point():
            if not torch.isfinite(got).all():
                raise DeployError(f"{path}: {k!r} contains NaN or Inf")
            if k.endswith("_mask") and not ((got == 0) | (got == 1)).all():
                bad = got[(got != 0) & (got != 1)].flatten()[0].item()
                raise DeployError(f"{path}: mask {k!r} is not binary (contains {bad:g})")
        if k.endswith("running_var") and (got < 0).any():
            raise DeployError(f"{path}: {k!r} has negative variances")


def load_checked(module: nn.Module, sd: dict[str, torch.Tensor], path: Path) -> nn.Module:
    check_against_module(sd, module, path)
    expected = module.state_dict()
    converted = {k: v.to(expected[k].dtype) for k, v in sd.items()}
    module.load_state_dict(converted, strict=True)
    return module.eval()
