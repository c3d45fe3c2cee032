"""Fidelity: how far a model's outputs are from the reference's, on one seeded input.

Every stage measures it this way: compaction (the compacted module against the ticket), the
exporters (an artifact against the ticket, gated by a tolerance on `rel`), bench and its remote
and per-layer runs, and the tests.

  input    torch.randn(shape) from torch.Generator().manual_seed(seed), seed 0 unless asked
  max_abs  the largest |reference - output| over every output tensor
  rel      the largest, over the output tensors, of that tensor's max |difference| divided by its
           max |reference| (floored at 1e-12, so an all-zero reference gives max_abs / 1e-12)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from .outputs import output_list

FIDELITY_SEED = 0
_FLOOR = 1e-12


def seeded_input(shape: Sequence[int], seed: int = FIDELITY_SEED) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=g).numpy()


def input_description(shape: Sequence[int], seed: int = FIDELITY_SEED) -> str:
    """What a manifest says the fidelity input was."""
    return f"torch.randn{tuple(shape)} seed {seed}"


def as_arrays(y: Any) -> list[np.ndarray]:
    """A runtime's outputs (a tensor or array, or a list, tuple or dict of them) as numpy arrays."""
    if isinstance(y, dict):
        y = list(y.values())
    out = []
    for t in (list(y) if isinstance(y, (list, tuple)) else [y]):
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().float()
        out.append(np.asarray(t.numpy() if hasattr(t, "numpy") else t))  # torch and TVM tensors have .numpy()
    return out


def reference_outputs(run: Callable[[torch.Tensor], Any], x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        y = run(torch.from_numpy(x))
    return [t.detach().float().numpy() for t in output_list(y)]


def compare(ref: list[np.ndarray], got: list[np.ndarray]) -> dict[str, float]:
    """{"max_abs", "rel"} of `got` against `ref` (see the module docstring); inf for both when the
    output count or a shape differs."""
    if len(ref) != len(got):
        return {"max_abs": float("inf"), "rel": float("inf")}
    max_abs, rel = 0.0, 0.0
    for r, g in zip(ref, got):
        if r.shape != g.shape:
            return {"max_abs": float("inf"), "rel": float("inf")}
        d = float(np.max(np.abs(r.astype(np.float64) - g))) if r.size else 0.0
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        max_abs = max(max_abs, d)
        rel = max(rel, d / max(scale, _FLOOR))
    return {"max_abs": max_abs, "rel": rel}
