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
    run_dw("dense", 3, 40, 14, 14, 7, 2, 0.0, "relu6", True, seed=3)  # batch 3
    run_dw("csr", 3, 24, 17, 15, 3, 1, 0.6, "none", False, seed=4)


@pytest.mark.parametrize("n", [2, 4, 5])
def test_threads_batch_images(threads, n):
    # One fork-join per batch: tasks are (image, channel range); a layer too small to split at
    # batch 1 runs its images in parallel.
    run_dw("dense", n, 32, 20, 18, 3, 1, 0.0, "relu", True, seed=20 + n)
    run_dw("csr", n, 24, 17, 15, 5, 2, 0.6, "none", False, seed=21 + n)
    run_dw("dense", n, 4, 5, 5, 3, 1, 0.0, "relu6", True, seed=22 + n)
    run_dw("csr", n, 3, 6, 7, 3, 2, 0.5, "none", True, seed=23 + n)


def test_tiny(isa):
    run_dw("dense", 1, 1, 1, 1, 3, 1, 0.0, "none", True, seed=1)
    run_dw("csr", 1, 2, 2, 3, 7, 2, 0.3, "relu", False, seed=2)


# Direct kernels (k = 3/5/7, stride 1/2): row tiles of 7 x up to 2 vectors, masked borders, the
# last vector of a row moved left to end at OW, per-channel choice of dense vs tap-at-a-time.

def run_dw_pad(fmt, n, c, h, w, k, stride, pad, keep, act, residual, seed, inplace=False):
    """keep[c]: live taps of channel c (exact count), so one layer mixes dense and sparse channels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((c, 1, k, k)).astype(np.float32)
    mask = np.zeros((c, k * k), bool)
    for i in range(c):
        mask[i, rng.permutation(k * k)[:keep[i % len(keep)]]] = True
    wt *= mask.reshape(wt.shape)
    b = rng.standard_normal(c).astype(np.float32)
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    res = rng.standard_normal((n, c, oh, ow)).astype(np.float32) if residual else None
    want = conv_ref(x, wt, b, stride, pad, c, act, res)
    if fmt == "dense":
        out = res if inplace else None
        got = K.dwconv2d(x, wt, b, res, stride=stride, padding=pad, act=act, out=out)
    else:
        layer = K.SparseConv2d.from_dense(wt, b, stride=stride, padding=pad, groups=c, act=act, fmt="csr")
        got = layer(x, res, out=res if inplace else None)
    assert_close(got, want)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(56, 56), (29, 41), (16, 33), (9, 70)])
def test_direct_wide_rows(isa, fmt, k, stride, hw):
    h, w = hw
    keep = [k * k, 1, k * k // 2, 0, (k * k) // 4 + 1, k * k - 2]
    run_dw_pad(fmt, 1, 6, h, w, k, stride, (k - 1) // 2, keep, "relu6", True, seed=k * 10 + stride)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("pad", [0, 1, 4])
def test_direct_padding(isa, fmt, k, pad):
    for stride in (1, 2):
        if 17 + 2 * pad < k:
            continue
        run_dw_pad(fmt, 2, 3, 17, 23, k, stride, pad, [k * k, 2, k * k // 3], "none", True,
                   seed=pad * 7 + k + stride)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_direct_inplace_residual(isa, fmt):
    # out aliasing the residual: overlapping vectors must not re-read an already written lane
    for k, stride, hw in [(3, 1, 40), (7, 1, 21), (5, 2, 45)]:
        run_dw_pad(fmt, 1, 4, hw, hw, k, stride, k // 2, [k * k, 3], "relu", True, seed=k, inplace=True)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_direct_one_channel_tiny(isa, fmt):
    for k in (3, 5, 7):
        for stride in (1, 2):
            for h, w in [(1, 1), (2, 9), (7, 7), (8, 1)]:
                run_dw_pad(fmt, 3, 1, h, w, k, stride, k // 2, [k * k - 1], "relu", False, seed=h * w + k)


# Small planes (output rows <= 8 columns, <= 64 outputs, "same" padding): AVX-512 runs the whole
# plane as <= 4 flat vectors, stride 2 through stack phase planes; other ISAs the row kernel.

@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_direct_small_planes(isa, fmt, k, stride):
    hws = [(7, 7), (8, 8), (4, 4), (5, 6), (1, 8), (3, 2)] if stride == 1 else \
          [(14, 14), (13, 13), (16, 16), (15, 9), (7, 7), (2, 5)]
    keep = [k * k, k * k - 1, 1, k * k // 2]
    for i, (h, w) in enumerate(hws):
        run_dw_pad(fmt, 3, 5, h, w, k, stride, (k - 1) // 2, keep, ["relu6", "none", "relu"][i % 3],
                   i % 2 == 0, seed=k * 100 + stride * 10 + i)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_direct_small_planes_inplace_and_pad(isa, fmt):
    for k in (3, 5, 7):
        for stride, hw in [(1, 7), (2, 14), (1, 5), (2, 9)]:
            run_dw_pad(fmt, 3, 4, hw, hw, k, stride, (k - 1) // 2, [k * k, 3], "relu", True,
                       seed=k + hw, inplace=True)
            for pad in (0, k // 2 + 1):  # not "same": the row kernel
                if hw + 2 * pad >= k:
                    run_dw_pad(fmt, 1, 3, hw, hw, k, stride, pad, [k * k], "none", True, seed=pad + k)


# Channel-blocked small planes (AVX-512, dwconv2d-cblock.h): output rows of <= 8 columns and <= 16
# rows, 16 channels per group through two register transposes; a last group of 8-15 channels
# runs there too, fewer are left to the row kernels. Other ISAs run the row kernels on the same
# cases. Any padding: the zero border is part of the transposed tile.

@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_channel_blocked_small_planes(isa, fmt, k, stride):
    hws = [(7, 7), (4, 4), (16, 5), (2, 8), (8, 3)] if stride == 1 else [(14, 14), (13, 15), (7, 7), (31, 4)]
    for i, (h, w) in enumerate(hws):
        c = [16, 21, 24, 40, 9][i % 5]  # whole groups, a tail left to the row kernels, tails of 8 and 9
        keep = [k * k, 0, 1, k * k // 2, k * k - 1]
        run_dw_pad(fmt, 2, c, h, w, k, stride, (k - 1) // 2, keep, ["relu6", "none", "relu"][i % 3],
                   i % 2 == 0, seed=k * 100 + stride * 10 + i)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_channel_blocked_pad_inplace_threads(isa, fmt, threads):
    for k in (3, 5, 7):
        for stride, hw in [(1, 6), (2, 13), (2, 3)]:
            for pad in (0, k // 2, k // 2 + 2):
                if hw + 2 * pad < k:
                    continue
                run_dw_pad(fmt, 1, 33, hw, hw, k, stride, pad, [k * k, 2, 0], "relu", True,
                           seed=k + hw + pad, inplace=pad == k // 2)
