"""Linear (classifier), CSR and dense, against torch.nn.functional.linear."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import st_deploy.kernels as K

from .conftest import act_ref, assert_close, sparse_weight


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("act", ["none", "relu", "relu6"])
@pytest.mark.parametrize("sparsity,fmt", [(0.0, "csr"), (0.9, "csr"), (0.999, "csr"), (0.0, "dense"), (0.5, "dense")])
def test_linear(isa, n, act, sparsity, fmt):
    rng = np.random.default_rng(n)
    # dense: whole groups of 4 rows and a remainder; inputs of whole vectors, a tail, and shorter
    # than one vector of every ISA.
    for fin, fout in [(1, 1), (37, 5), (1280, 100), (16, 7), (3, 9)]:
        x = rng.standard_normal((n, fin)).astype(np.float32)
        w = sparse_weight((fout, fin), sparsity, rng)
        b = rng.standard_normal(fout).astype(np.float32)
        got = K.SparseLinear.from_dense(w, b, act=act, fmt=fmt)(x)
        want = act_ref(F.linear(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                torch.from_numpy(b).double()), act).float().numpy()
        assert_close(got, want)


@pytest.mark.parametrize("batch", [1, 3])
def test_linear_no_bias_torch(threads, batch):
    rng = np.random.default_rng(0)
    x = torch.randn(batch, 512)
    w = sparse_weight((1000, 512), 0.8, rng)
    got = K.SparseLinear.from_dense(w)(x)
    assert isinstance(got, torch.Tensor)
    assert_close(got.numpy(), F.linear(x.double(), torch.from_numpy(w).double()).float().numpy())


def test_linear_dense_threads_and_out(threads):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1600)).astype(np.float32)
    w = rng.standard_normal((1001, 1600)).astype(np.float32)  # enough work to split over threads
    out = K.aligned_empty((2, 1001))
    got = K.linear_dense(x, w, None, act="relu", out=out)
    assert got is out
    assert_close(got, F.relu(F.linear(torch.from_numpy(x).double(), torch.from_numpy(w).double())).float().numpy())


def test_linear_dense_faults():
    x = np.ones((2, 4), np.float32)
    with pytest.raises(K.KernelError, match="weight"):
        K.linear_dense(x, np.ones((3, 5), np.float32))
    with pytest.raises(K.KernelError, match="bias"):
        K.linear_dense(x, np.ones((3, 4), np.float32), np.ones(2, np.float32))
    with pytest.raises(K.KernelError, match="act"):
        K.linear_dense(x, np.ones((3, 4), np.float32), act=7)
    with pytest.raises(K.KernelError, match="linear format"):
        K.SparseLinear.from_dense(np.ones((3, 4), np.float32), fmt="bsr4x1")
