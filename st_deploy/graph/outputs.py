"""A model's outputs as a flat list of tensors, in order.

Models return a tensor, a tuple/list of them, or a dict (torchvision's segmentation models
return {"out": ...}); the graph keeps them in that order, and every fidelity check compares
the lists.
"""

from __future__ import annotations

from typing import Any

import torch


def output_list(y: Any) -> list[torch.Tensor]:
    if isinstance(y, torch.Tensor):
        return [y]
    items = list(y.values()) if isinstance(y, dict) else list(y) if isinstance(y, (list, tuple)) else None
    if items is None or not all(isinstance(t, torch.Tensor) for t in items):
        raise TypeError(f"model output {type(y).__name__} is not a tensor, or a list, tuple or dict of tensors")
    return items
