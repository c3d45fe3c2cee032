"""Shared fixtures: the SuperTickets samples from ../shared (skipped where absent), the example ticket,
the st.sparse library, and one small artifact of each kind."""

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


def import_test_extra(name: str):
    """Import `name`, a package of the [test] extra: where it does not import, skip with the reason,
    except in CI ($CI set, as .ci/run does, which installs the extra), where that fails."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError as e:
        msg = f"{name} does not import ({e}); it is in the test extra: pip install \".[test]\""
        if os.environ.get("CI"):
            pytest.fail(f"{msg}; CI={os.environ['CI']!r} requires it")
        pytest.skip(msg, allow_module_level=True)


def sample_io(samples: Path, name: str) -> dict:
    return torch.load(samples / f"{name}.io.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def example_ticket(tmp_path_factory) -> Path:
    """The built-in example ticket, written once per session."""
    from st_deploy.example import make_example
    return make_example(tmp_path_factory.mktemp("example") / "ex", seed=0)


@pytest.fixture(scope="session")
def ort_lib() -> Path:
    """The st.sparse library: a missing one fails in CI and wherever the kernels were built
    (tests/ort_lib.py), and skips only in a checkout with no native build at all."""
    from tests.ort_lib import require_ort_library
    return require_ort_library()


@pytest.fixture(scope="session")
def small_ticket_file(tmp_path_factory) -> Path:
    """A small packed ticket file (mobilenetv2_like, 70 % masks) made by our own model code: the CLI
    tests that need a ticket on disk but no shared sample run in a fresh clone too."""
    from st_deploy import save_ticket
    from tests.tickets import masked_zoo_ticket
    out = tmp_path_factory.mktemp("ticket") / "small.pt"
    save_ticket(masked_zoo_ticket("mobilenetv2_like", seed=0, density=0.3), out)
    return out


def _serve_ticket():
    from tests.tickets import masked_zoo_ticket
    return masked_zoo_ticket("mobilenetv2_like", seed=0, density=0.2)


@pytest.fixture(scope="session")
def onnx_artifact(tmp_path_factory, ort_lib) -> Path:
    """mobilenetv2_like, 80 % masks, 32x32: model.dense.onnx + model.sparse.onnx, batch dim "N"."""
    from st_deploy.api import export
    from tests.artifacts import SERVE_SHAPE
    return export(_serve_ticket(), target="onnx", out=tmp_path_factory.mktemp("serve") / "onnx", input_shape=SERVE_SHAPE)


@pytest.fixture(scope="session")
def tvm_artifact(tmp_path_factory) -> Path:
    """The same ticket as a TVM llvm artifact for this CPU (batch fixed at 1)."""
    from st_deploy.api import export
    from tests.artifacts import SERVE_SHAPE
    return export(_serve_ticket(), target="llvm", out=tmp_path_factory.mktemp("serve") / "tvm", input_shape=SERVE_SHAPE)
