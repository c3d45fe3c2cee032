"""Shared fixtures: the SuperTickets samples from ../shared (skipped where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SAMPLE_NAMES = ("cls_mini_supernet", "cls_mini_searched", "seg_mini_supernet")


def samples_dir() -> Path | None:
    candidates = [os.environ.get("ST_DEPLOY_SHARED", ""),
                  Path(__file__).resolve().parents[1].parent / "shared"]
    for c in candidates:
        if c and (Path(c) / "samples" / "supertickets" / "FORMAT.md").is_file():
            return Path(c) / "samples" / "supertickets"
    return None


SAMPLES = samples_dir()
needs_samples = pytest.mark.skipif(
    SAMPLES is None, reason="shared SuperTickets samples (../shared/samples/supertickets) are absent "
                            "in this checkout; set ST_DEPLOY_SHARED to the shared folder")


@pytest.fixture(scope="session")
def samples() -> Path:
    if SAMPLES is None:
        pytest.skip("shared SuperTickets samples are absent (set ST_DEPLOY_SHARED)")
    return SAMPLES


def sample_io(samples: Path, name: str) -> dict:
    return torch.load(samples / f"{name}.io.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def example_ticket(tmp_path_factory) -> Path:
    """The built-in example ticket, written once per session."""
    from st_deploy.example import make_example
    return make_example(tmp_path_factory.mktemp("example") / "ex", seed=0)
