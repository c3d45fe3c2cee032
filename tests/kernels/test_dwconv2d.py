"""Depthwise conv, dense and sparse (live taps), against torch's grouped conv2d."""

from __future__ import annotations

import numpy as np
import pytest

import st_deploy.kernels as K

from .conftest import assert_close, conv_ref, sparse_weight


def run_dw(fmt, n, c, h, w, k, stride, sparsity, act, residual, seed, bias=True):
    rng = np.random.default_rng(seed)
    pad = (k - 1) // 2
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = sparse_weight((c, 1, k, k), sparsity, rng)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    res = rng.standard_normal((n, c, oh, ow)).astype(np.float32) if residual else None
    layer = K.SparseConv2d.from_dense(wt, b, stride=stride, padding=pad, groups=c, act=act, fmt=fmt)
    got = layer(x, res)
    assert_close(got, conv_ref(x, wt, b, stride, pad, c, act, res))


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_kernel_sizes_strides(isa, fmt, k, stride):
    run_dw(fmt, 1, 5, 13, 11, k, stride, 0.5, "relu", False, seed=k + stride)
    run_dw(fmt, 1, 3, 8, 8, k, stride, 0.0, "none", True, seed=k * stride)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("act", ["none", "relu", "relu6"])
@pytest.mark.parametrize("n", [1, 3])
def test_epilogue_residual_batch(isa, fmt, act, n):
    run_dw(fmt, n, 6, 9, 17, 3, 1, 0.4, act, True, seed=n)
    run_dw(fmt, n, 6, 20, 7, 5, 2, 0.4, act, False, seed=n + 1, bias=False)


@pytest.mark.parametrize("sparsity", [0.35, 0.75, 0.95, 1.0])
def test_sparse_taps(isa, sparsity):
    run_dw("csr", 2, 16, 15, 15, 3, 1, sparsity, "relu6", True, seed=int(sparsity * 100))
    run_dw("csr", 1, 8, 14, 14, 7, 2, sparsity, "none", False, seed=3)


def test_threads_large(threads):
    run_dw("dense", 2, 64, 28, 28, 3, 1, 0.0, "relu", True, seed=1)
    run_dw("csr", 1, 48, 30, 30, 5, 2, 0.5, "relu6", False, seed=2)


def test_tiny(isa):
    run_dw("dense", 1, 1, 1, 1, 3, 1, 0.0, "none", True, seed=1)
    run_dw("csr", 1, 2, 2, 3, 7, 2, 0.3, "relu", False, seed=2)
