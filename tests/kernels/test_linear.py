"""Sparse linear (classifier) against torch.nn.functional.linear."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import st_deploy.kernels as K

from .conftest import act_ref, assert_close, sparse_weight


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("act", ["none", "relu", "relu6"])
@pytest.mark.parametrize("sparsity", [0.0, 0.9, 0.999])
def test_linear(isa, n, act, sparsity):
    rng = np.random.default_rng(n)
    for fin, fout in [(1, 1), (37, 5), (1280, 100)]:
        x = rng.standard_normal((n, fin)).astype(np.float32)
        w = sparse_weight((fout, fin), sparsity, rng)
        b = rng.standard_normal(fout).astype(np.float32)
        got = K.SparseLinear.from_dense(w, b, act=act)(x)
        want = act_ref(F.linear(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                torch.from_numpy(b).double()), act).float().numpy()
        assert_close(got, want)


def test_linear_no_bias_torch(threads):
    rng = np.random.default_rng(0)
    x = torch.randn(4, 512)
    w = sparse_weight((1000, 512), 0.8, rng)
    got = K.SparseLinear.from_dense(w)(x)
    assert isinstance(got, torch.Tensor)
    assert_close(got.numpy(), F.linear(x.double(), torch.from_numpy(w).double()).float().numpy())
