"""Checking exported artifacts, and inputs for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

REL = 1e-5  # the brief's bar for llvm exports (fp32, against the ticket's own torch output)
SERVE_SHAPE = (1, 3, 32, 32)  # the input of the small artifacts the serving and runtime tests share


def manifest(out: Path) -> dict[str, Any]:
    """The artifact's manifest, checked against the one schema (st_deploy.artifact.read_manifest)."""
    from st_deploy.artifact import read_manifest
    return read_manifest(out)


def check_against(out: Path, reference: Any, shape: tuple[int, ...], seed: int = 1) -> float:
    """Relative error of the artifact (st_deploy.load) vs `reference` on a fresh seeded input
    (a different one from the exporter's own fidelity check)."""
    from st_deploy.runtime.runner import load
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = reference(x)
    got = load(out, threads=1).run(x.numpy())
    refs = ref if isinstance(ref, (list, tuple)) else [ref]
    gots = got if isinstance(got, list) else [got]
    assert len(refs) == len(gots)
    rel = 0.0
    for r, o in zip(refs, gots):
        r = r.numpy()
        assert o.shape == r.shape
        rel = max(rel, float(np.abs(o - r).max() / np.abs(r).max()))
    return rel


def inputs(n: int, batch: int = 1, seed: int = 0) -> list[np.ndarray]:
    """n distinct float32 inputs of SERVE_SHAPE with the given batch."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, *SERVE_SHAPE[1:])).astype(np.float32) for _ in range(n)]
