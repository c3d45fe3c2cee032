"""Fixtures for the serving tests: one small artifact of each kind, built once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.export.conftest import ort_lib  # noqa: F401  (the st.sparse library fixture, same rule as there)

SHAPE = (1, 3, 32, 32)


def _ticket():
    from tests.export_tvm.conftest import masked_zoo_ticket
    return masked_zoo_ticket("mobilenetv2_like", seed=0, density=0.2)


@pytest.fixture(scope="session")
def onnx_artifact(tmp_path_factory, ort_lib) -> Path:  # noqa: F811 - the imported fixture, by name
    """mobilenetv2_like, 80 % masks, 32x32: model.dense.onnx + model.sparse.onnx, batch dim "N"."""
    from st_deploy.api import export
    return export(_ticket(), target="onnx", out=tmp_path_factory.mktemp("serve") / "onnx", input_shape=SHAPE)


@pytest.fixture(scope="session")
def tvm_artifact(tmp_path_factory) -> Path:
    """The same ticket as a TVM llvm artifact for this CPU (batch fixed at 1)."""
    from st_deploy.api import export
    return export(_ticket(), target="llvm", out=tmp_path_factory.mktemp("serve") / "tvm", input_shape=SHAPE)


def inputs(n: int, batch: int = 1, seed: int = 0) -> list[np.ndarray]:
    """n distinct float32 inputs of SHAPE with the given batch."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, *SHAPE[1:])).astype(np.float32) for _ in range(n)]
