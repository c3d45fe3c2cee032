"""Fixtures for the TVM export tests: small graphs, masked zoo tickets, export helpers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))  # graphs.every_op_graph

from st_deploy.ticket import Ticket  # noqa: E402

REL = 1e-5  # the brief's bar for llvm exports (fp32, against the ticket's own torch output)


def masked_zoo_ticket(factory: str, seed: int = 0, density: float = 0.3, **kwargs: Any) -> Ticket:
    """A zoo model with random BN statistics and unstructured masks (weight_mask buffers)."""
    from st_deploy.models import zoo
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = getattr(zoo, factory)(**kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                mask = (torch.rand(m.weight.shape, generator=g) < density).float()
                m.weight.mul_(mask)
                m.register_buffer("weight_mask", mask)
    return Ticket(module=model.eval(), family="masked", config={"model": f"st_deploy.models.zoo:{factory}"},
                  task="classification", default_input_shape=(1, 3, 64, 64), name=factory)


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


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


@pytest.fixture(scope="session")
def every_op():
    from graphs import every_op_graph
    return every_op_graph()
