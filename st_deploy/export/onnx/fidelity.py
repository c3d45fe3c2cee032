"""Fidelity: exported models run in onnxruntime against the ticket's own torch output."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ...graph.outputs import output_list

FIDELITY_SEED = 0


def seeded_input(shape: tuple[int, ...], seed: int = FIDELITY_SEED) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).numpy()


def reference_outputs(run: Callable[[torch.Tensor], Any], x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        y = run(torch.from_numpy(x))
    return [t.detach().float().numpy() for t in output_list(y)]


def compare(ref: list[np.ndarray], got: list[np.ndarray]) -> dict[str, float]:
    """max_abs: largest absolute difference; rel: max_abs over the largest |reference| value."""
    max_abs, rel = 0.0, 0.0
    for r, g in zip(ref, got):
        if r.shape != g.shape:
            return {"max_abs": float("inf"), "rel": float("inf")}
        d = float(np.max(np.abs(r.astype(np.float64) - g))) if r.size else 0.0
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        max_abs = max(max_abs, d)
        rel = max(rel, d / max(scale, 1e-12))
    return {"max_abs": max_abs, "rel": rel}


def run_onnx(path: Path, x: np.ndarray, threads: int = 1) -> list[np.ndarray]:
    from ...runtime.ort import ort_session
    sess = ort_session(path, threads=threads)
    return sess.run(None, {sess.get_inputs()[0].name: x})
