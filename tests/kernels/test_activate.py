"""st_activate (every activation kind, vectorised) against torch in float64; the code table
against the C header."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from st_deploy.graph.vocabulary import ACT_CODES
from st_deploy.kernels import KernelError, activate

REF = {"none": lambda t: t, "relu": F.relu, "relu6": F.relu6, "swish": F.silu, "hswish": F.hardswish,
       "sigmoid": torch.sigmoid, "hsigmoid": F.hardsigmoid, "gelu": F.gelu, "tanh": torch.tanh}
HEADER = Path(__file__).resolve().parents[2] / "kernels" / "include" / "st_kernels.h"


def test_codes_match_the_header():
    enum = re.search(r"enum st_act \{(.*?)\};", HEADER.read_text(), re.S).group(1)
    codes = {m.group(1).lower(): int(m.group(2)) for m in re.finditer(r"ST_ACT_(\w+) = (\d+)", enum)}
    assert codes == ACT_CODES
    assert set(REF) == set(ACT_CODES)


@pytest.mark.parametrize("kind", sorted(ACT_CODES))
@pytest.mark.parametrize("n", [0, 1, 7, 15, 16, 17, 33, 4099])  # vector tails of both widths
def test_matches_torch(kind, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 8).astype(np.float32)
    x[: min(n, 4)] = [-200.0, 200.0, 0.0, -1e-30][: min(n, 4)]  # clamps of exp, zero, a denormal-sized value
    res = rng.standard_normal(n).astype(np.float32)
    want = REF[kind](torch.from_numpy(x).double()).numpy()
    got = activate(x, kind)
    tol = 2e-6 * max(1.0, float(np.abs(want).max()) if n else 1.0)
    assert np.abs(got - want).max(initial=0.0) <= tol
    assert np.abs(activate(x, kind, residual=res) - (want + res)).max(initial=0.0) <= tol + 1e-6


def test_in_place_and_torch_tensors():
    x = torch.randn(2, 3, 5, 7)
    want = F.silu(x)
    out = activate(x, "swish", out=x)
    assert out is x
    torch.testing.assert_close(x, want, rtol=1e-6, atol=1e-6)


def test_unknown_kind_is_refused():
    with pytest.raises(KernelError, match="unknown activation 'mish'"):
        activate(np.zeros(4, np.float32), "mish")
