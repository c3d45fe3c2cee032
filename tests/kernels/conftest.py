"""Shared fixtures: the kernel library (installed, $ST_KERNELS_LIB, or built here), ISA variants,
and dense torch references."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "st_kernels"


def _ensure_library() -> None:
    """Use the installed library or $ST_KERNELS_LIB; otherwise build kernels/ with cmake (-j2)."""
    from st_deploy.kernels import _lib

    if _lib.library_path().is_file():
        return
    built = BUILD / "libst_kernels.so"
    cmd_cfg = ["cmake", "-S", str(REPO / "kernels"), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release",
               f"-DPython_EXECUTABLE={sys.executable}"]
    cmd_build = ["cmake", "--build", str(BUILD), "-j2", "--target", "st_kernels"]
    for cmd in (cmd_cfg, cmd_build):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.exit(f"building the kernel library failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}", 1)
    os.environ[_lib.ENV_LIB] = str(built)
    _lib.load.cache_clear()


_ensure_library()

import st_deploy.kernels as K  # noqa: E402  (after the library is in place)

ALL_ISAS = list(K.ISAS)


@pytest.fixture(params=ALL_ISAS)
def isa(request: pytest.FixtureRequest) -> str:
    """Runs the test once per ISA variant, skipping (with the reason) those this CPU lacks."""
    name = request.param
    if not K.isa_available(name):
        pytest.skip(f"ISA variant {name} is not available on this machine/build")
    with K.use_isa(name):
        yield name


# 3 threads: task splits that do not divide evenly.
@pytest.fixture(params=[1, 2, 3], ids=["t1", "t2", "t3"])
def threads(request: pytest.FixtureRequest) -> int:
    before = K.get_num_threads()
    K.set_num_threads(request.param)
    yield request.param
    K.set_num_threads(before)


def sparse_weight(shape: tuple[int, ...], sparsity: float, rng: np.random.Generator,
                  block4: bool = False) -> np.ndarray:
    """Random weight with about `sparsity` zeros (4x1 channel blocks when block4)."""
    w = rng.standard_normal(shape).astype(np.float32)
    if block4:
        cout = shape[0]
        keep = rng.random(((cout + 3) // 4,) + tuple(shape[1:])) >= sparsity
        keep = np.repeat(keep, 4, axis=0)[:cout]
    else:
        keep = rng.random(shape) >= sparsity
    return w * keep


def act_ref(y: torch.Tensor, act: str) -> torch.Tensor:
    return {"none": y, "relu": F.relu(y), "relu6": F.relu6(y)}[act]


def conv_ref(x: np.ndarray, w: np.ndarray, b, stride: int, pad: int, groups: int, act: str,
             residual=None) -> np.ndarray:
    y = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                 None if b is None else torch.from_numpy(b).double(), stride=stride, padding=pad,
                 groups=groups)
    y = act_ref(y, act)
    if residual is not None:
        y = y + torch.from_numpy(residual).double()
    return y.float().numpy()


def assert_close(got, want, rtol: float = 1e-4) -> None:
    got = np.asarray(got)
    scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)
