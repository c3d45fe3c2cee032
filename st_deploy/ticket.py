"""Ticket: the one object handed from stage to stage (load -> compact -> plan -> export)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

DEFAULT_INPUT_SHAPES = {
    "classification": (1, 3, 224, 224),
    "segmentation": (1, 3, 512, 1024),
    "keypoints": (1, 3, 256, 192),
}

# The usual input of each dataset the SuperTickets paper trains on (N, C, H, W): ImageNet crops,
# Cityscapes and ADE20K as HR-NAS evaluates them, COCO person crops for pose.
DATASET_INPUT_SHAPES = {
    "ImageNet": (1, 3, 224, 224),
    "Cityscapes": (1, 3, 512, 1024),
    "ADE20K": (1, 3, 512, 512),
    "COCO keypoints": (1, 3, 256, 192),
}
# A segmentation head's class count names its dataset; nothing else in a checkpoint does.
SEGMENTATION_DATASETS = {19: "Cityscapes", 150: "ADE20K"}


@dataclass(frozen=True)
class Ticket:
    """A pruned network and what is known about it.

    module: eval-mode torch module computing exactly what the ticket computes (masks applied).
    family: "supertickets", "masked" (a generic model with masks), or "compact" (our compacted form).
    config: the family's construction parameters (for SuperTickets, model_kwparams plus the
        per-block architecture); enough, with the state_dict, to rebuild the module.
    task: "classification", "segmentation" or "keypoints".
    default_input_shape: N, C, H, W used for FLOPs, export and benchmarks when none is given.
    source: path the ticket was read from; sha256 of its main file (provenance for manifests).
    """

    module: torch.nn.Module
    family: str
    config: dict[str, Any]
    task: str
    default_input_shape: tuple[int, int, int, int]
    source: str = ""
    sha256: str = ""
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> "Ticket":
        return dataclasses.replace(self, **changes)

    def masks(self) -> dict[str, torch.Tensor]:
        """Unstructured weight masks of conv/linear layers, by module name."""
        out = {}
        for name, mod in self.module.named_modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                mask = getattr(mod, "weight_mask", None)
                if isinstance(mask, torch.Tensor):
                    out[name] = mask
        return out

    def __call__(self, x: torch.Tensor) -> Any:
        with torch.no_grad():
            return self.module(x)
