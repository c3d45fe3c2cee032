"""Malformed layers and arguments raise KernelError (a ValueError) with a message; never a crash.

The raw tvm-ffi functions are called too, so the C++ checks are tested without the Python ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import st_deploy.kernels as K

X = np.ones((1, 3, 5, 5), np.float32)
COLS = 3 * 3 * 3  # cin * k * k


def good_csr():
    w = np.zeros((4, COLS), np.float32)
    w[0, 1] = 1.0
    w[2, 26] = 2.0
    w[3, 0] = 3.0
    return K.to_csr(w)


def conv(ip, ix, v, fmt="csr", cout=4, **kw):
    fn = K.conv2d_csr if fmt == "csr" else K.conv2d_bsr4x1
    return fn(X, ip, ix, v, out_channels=cout, kernel_size=3, padding=1, **kw)


CSR_FAULTS = {
    "index out of range": (lambda ip, ix, v: (ip, np.array([1, 27, 0], np.int32), v), "out of range"),
    "huge index": (lambda ip, ix, v: (ip, np.array([1, 2**31 - 1, 0], np.int32), v), "out of range"),
    "negative index": (lambda ip, ix, v: (ip, np.array([1, -1, 0], np.int32), v), "out of range"),
    "non-monotone indptr": (lambda ip, ix, v: (np.array([0, 2, 1, 2, 3], np.int32), ix, v), "decreases"),
    "indptr not from 0": (lambda ip, ix, v: (np.array([1, 1, 1, 2, 3], np.int32), ix, v), r"indptr\[0\]"),
    "indptr end != nnz": (lambda ip, ix, v: (np.array([0, 1, 1, 2, 2], np.int32), ix, v), "ends at"),
    "indptr too short": (lambda ip, ix, v: (ip[:-1], ix, v), "entries, expected"),
    "indptr too long": (lambda ip, ix, v: (np.append(ip, 3).astype(np.int32), ix, v), "entries, expected"),
    "values too short": (lambda ip, ix, v: (ip, ix, v[:-1]), "values has"),
    "values too long": (lambda ip, ix, v: (ip, ix, np.append(v, 1.0).astype(np.float32)), "values has"),
}


@pytest.mark.parametrize("fault", sorted(CSR_FAULTS))
def test_csr_faults(fault):
    make, msg = CSR_FAULTS[fault]
    ip, ix, v = make(*good_csr())
    with pytest.raises(K.KernelError, match=msg):
        conv(ip, ix, v)
    with pytest.raises(K.KernelError):
        K.validate_sparse(ip, ix, 4, COLS, 1, v.size)


def test_good_csr_runs():
    out = conv(*good_csr())
    assert out.shape == (1, 4, 5, 5)


def test_bsr_faults():
    w = np.zeros((6, COLS), np.float32)
    w[0, 3] = 1.0
    w[5, 26] = 1.0
    ip, ix, v = K.to_bsr4x1(w)
    conv(ip, ix, v, "bsr4x1", cout=6)  # valid
    with pytest.raises(K.KernelError, match="values"):
        conv(ip, ix, v.reshape(-1)[:-1], "bsr4x1", cout=6)
    with pytest.raises(K.KernelError, match="entries, expected"):
        conv(ip, ix, v, "bsr4x1", cout=9)  # 3 block rows needed, indptr has 2 + 1
    with pytest.raises(K.KernelError, match="out of range"):
        conv(ip, np.array([3, 27], np.int32), v, "bsr4x1", cout=6)
    with pytest.raises(ValueError, match="block"):
        K.load().conv2d_bsr(X, ip, ix, v, None, None, 3, 3, 1, 1, 0, 2, np.empty((1, 6, 5, 5), np.float32))


def test_depthwise_and_linear_faults():
    x = np.ones((1, 2, 6, 6), np.float32)
    with pytest.raises(K.KernelError, match="out of range"):
        K.dwconv2d_csr(x, [0, 1, 2], [0, 9], [1.0, 1.0], kernel_size=3)
    with pytest.raises(K.KernelError, match="entries, expected"):
        K.dwconv2d_csr(x, [0, 2], [0, 1], [1.0, 1.0], kernel_size=3)
    with pytest.raises(K.KernelError, match="shape"):
        K.dwconv2d(x, np.ones((3, 1, 3, 3), np.float32))
    with pytest.raises(K.KernelError, match="out of range"):
        K.linear_csr(np.ones((2, 4), np.float32), [0, 1], [4], [1.0], out_features=1)
    with pytest.raises(K.KernelError, match="decreases"):
        K.linear_csr(np.ones((2, 4), np.float32), [0, 1, 0], [1], [1.0], out_features=2)


def test_argument_faults_through_raw_ffi():
    mod = K.load()
    ip, ix, v = good_csr()
    out = np.empty((1, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match="int32"):
        mod.conv2d_csr(X, ip.astype(np.int64), ix, v, None, None, 3, 3, 1, 1, 0, out)
    with pytest.raises(ValueError, match="float32"):
        mod.conv2d_csr(X.astype(np.float64), ip, ix, v, None, None, 3, 3, 1, 1, 0, out)
    with pytest.raises(ValueError, match="out has shape"):
        mod.conv2d_csr(X, ip, ix, v, None, None, 3, 3, 2, 1, 0, out)
    with pytest.raises(ValueError, match="bias"):
        mod.conv2d_csr(X, ip, ix, v, np.ones(3, np.float32), None, 3, 3, 1, 1, 0, out)
    with pytest.raises(ValueError, match="residual"):
        mod.conv2d_csr(X, ip, ix, v, None, np.ones((1, 4, 5, 4), np.float32), 3, 3, 1, 1, 0, out)
    with pytest.raises(ValueError, match="contiguous"):
        xt = torch.ones(1, 3, 5, 10)[..., ::2]
        mod.conv2d_csr(xt, ip, ix, v, None, None, 3, 3, 1, 1, 0, out)
    with pytest.raises(ValueError, match="act"):
        mod.conv2d_csr(X, ip, ix, v, None, None, 3, 3, 1, 1, 7, out)
    with pytest.raises(ValueError, match="kernel"):
        mod.conv2d_csr(X, ip, ix, v, None, None, 9, 9, 1, 1, 0, out)
    with pytest.raises(ValueError, match="dims"):
        mod.conv2d_csr(X[0], ip, ix, v, None, None, 3, 3, 1, 1, 0, out)
    # Columns must match cin * k * k of the call, not of the layer it came from.
    with pytest.raises(ValueError, match="out of range"):
        mod.conv2d_csr(X, ip, ix, v, None, None, 1, 1, 1, 0, 0, out)


def test_layer_construction_faults():
    with pytest.raises(K.KernelError, match="format"):
        K.SparseConv2d.from_dense(np.ones((4, 3, 3, 3), np.float32), fmt="coo")
    with pytest.raises(K.KernelError, match="dense groups=1"):
        K.SparseConv2d.from_dense(np.ones((4, 3, 3, 3), np.float32), fmt="dense")
    with pytest.raises(K.KernelError, match="groups"):
        K.SparseConv2d.from_dense(np.ones((4, 2, 3, 3), np.float32), groups=2)
    with pytest.raises(K.KernelError, match="activation"):
        K.SparseConv2d.from_dense(np.ones((4, 3, 3, 3), np.float32), act="gelu")
    with pytest.raises(K.KernelError, match="bias"):
        K.SparseConv2d.from_dense(np.ones((4, 3, 3, 3), np.float32), bias=np.ones(3))
    with pytest.raises(K.KernelError, match="padding"):
        K.SparseConv2d.from_dense(np.ones((4, 3, 3, 3), np.float32), padding=(1, 0))
