"""Sparse regular conv (CSR, BSR4x1) against torch's dense conv2d."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import st_deploy.kernels as K

from .conftest import assert_close, conv_ref, sparse_weight

FMTS = ["csr", "bsr4x1"]


def run_case(fmt, n, cin, cout, h, w, k, stride, sparsity, act, residual, seed, bias=True,
             torch_io=False):
    rng = np.random.default_rng(seed)
    pad = (k - 1) // 2
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    wt = sparse_weight((cout, cin, k, k), sparsity, rng, block4=fmt == "bsr4x1")
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    res = rng.standard_normal((n, cout, oh, ow)).astype(np.float32) if residual else None
    layer = K.SparseConv2d.from_dense(wt, b, stride=stride, padding=pad, act=act, fmt=fmt)
    if torch_io:
        got = layer(torch.from_numpy(x), None if res is None else torch.from_numpy(res))
        assert isinstance(got, torch.Tensor)
        got = got.numpy()
    else:
        got = layer(x, res)
    assert got.shape == (n, cout, oh, ow)
    assert_close(got, conv_ref(x, wt, b, stride, pad, 1, act, res))


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_kernel_sizes_and_strides(isa, fmt, k, stride):
    # Odd sizes exercise vector tails and the wide-row padding columns.
    run_case(fmt, 1, 6, 10, 11, 9, k, stride, 0.7, "relu", False, seed=k * 10 + stride)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("act", ["none", "relu", "relu6"])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("n", [1, 3])
def test_epilogues_batch(isa, fmt, act, residual, n):
    run_case(fmt, n, 8, 7, 13, 5, 3, 1, 0.5, act, residual, seed=n + 7 * residual)
    run_case(fmt, n, 8, 9, 6, 17, 1, 2, 0.5, act, residual, seed=n + 3, bias=False)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 0.999])
def test_sparsity_levels(isa, fmt, sparsity):
    run_case(fmt, 1, 32, 24, 14, 14, 1, 1, sparsity, "none", True, seed=int(sparsity * 1000))
    run_case(fmt, 1, 16, 12, 9, 9, 3, 2, sparsity, "relu6", False, seed=5)


@pytest.mark.parametrize("fmt", FMTS)
def test_threads(threads, fmt):
    # Big enough to be split over tasks (rows and wide positions) with 2 threads.
    run_case(fmt, 2, 48, 40, 30, 29, 3, 1, 0.6, "relu", True, seed=11)
    run_case(fmt, 1, 96, 70, 28, 28, 1, 1, 0.8, "none", False, seed=12)
    run_case(fmt, 1, 24, 20, 33, 31, 5, 2, 0.6, "relu6", True, seed=13)
    run_case(fmt, 3, 40, 36, 14, 14, 1, 1, 0.9, "relu", True, seed=14)  # batch 3, a small layer
    run_case(fmt, 3, 32, 24, 15, 17, 3, 2, 0.7, "none", False, seed=15)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("n", [2, 4, 5])
def test_threads_batch_images(threads, fmt, n):
    # A batch of >= threads images runs whole images per task (each filling its own layout on its
    # thread); the images left over split within the image. Every input layout: phase-split 3x3,
    # stride 2, 1x1 gathered (7x7), 1x1 direct in place and packed (unaligned), and a layer too
    # small to split at batch 1 that is parallel over the batch.
    run_case(fmt, n, 24, 20, 30, 29, 3, 1, 0.6, "relu", True, seed=50 + n)
    run_case(fmt, n, 16, 24, 21, 19, 5, 2, 0.7, "relu6", False, seed=51 + n)
    run_case(fmt, n, 64, 40, 7, 7, 1, 1, 0.8, "none", True, seed=52 + n)
    for path in ("gather", "direct"):
        with K.use_conv1x1_path(path):
            run_case(fmt, n, 32, 28, 16, 16, 1, 1, 0.7, "relu", True, seed=53 + n)
            run_case(fmt, n, 20, 12, 9, 11, 1, 1, 0.5, "none", False, seed=54 + n)
    run_case(fmt, n, 4, 4, 6, 6, 3, 1, 0.5, "relu", True, seed=55 + n)


@pytest.mark.parametrize("n", [2, 4])
def test_threads_batch_unaligned_direct(threads, n):
    rng = np.random.default_rng(60 + n)
    x = rng.standard_normal((n, 32, 16, 16)).astype(np.float32)
    wt = sparse_weight((24, 32, 1, 1), 0.7, rng, block4=False)
    res = rng.standard_normal((n, 24, 16, 16)).astype(np.float32)
    with K.use_conv1x1_path("direct"):
        layer = K.SparseConv2d.from_dense(wt, None, act="relu", fmt="csr")
        assert_close(layer(unaligned_copy(x), res), conv_ref(x, wt, None, 1, 0, 1, "relu", res))


@pytest.mark.parametrize("fmt", FMTS)
def test_all_zero_layer_and_empty_rows(isa, fmt):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 8, 8)).astype(np.float32)
    w = np.zeros((6, 5, 3, 3), np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    got = K.SparseConv2d.from_dense(w, b, padding=1, act="relu", fmt=fmt)(x)
    assert_close(got, conv_ref(x, w, b, 1, 1, 1, "relu"))
    w[2, 1, 0, 2] = 1.5  # one live entry, every other row empty
    w[5, 4, 1, 1] = -2.0
    got = K.SparseConv2d.from_dense(w, b, padding=1, fmt=fmt)(x)
    assert_close(got, conv_ref(x, w, b, 1, 1, 1, "none"))


@pytest.mark.parametrize("fmt", FMTS)
def test_one_channel_and_tiny_images(isa, fmt):
    run_case(fmt, 1, 1, 1, 1, 1, 1, 1, 0.0, "none", True, seed=1)
    run_case(fmt, 2, 1, 5, 3, 2, 3, 1, 0.3, "relu", False, seed=2)
    run_case(fmt, 1, 3, 1, 2, 7, 3, 2, 0.3, "none", True, seed=3)
    run_case(fmt, 1, 2, 3, 7, 7, 7, 2, 0.2, "relu6", False, seed=4)


def test_torch_tensors_in_and_out():
    run_case("csr", 2, 8, 8, 10, 10, 3, 1, 0.8, "relu", True, seed=21, torch_io=True)
    run_case("bsr4x1", 2, 8, 6, 10, 10, 1, 2, 0.8, "relu", False, seed=22, torch_io=True)


def test_cout_not_multiple_of_4_bsr(isa):
    for cout in (1, 2, 3, 5, 13):
        run_case("bsr4x1", 1, 7, cout, 9, 10, 3, 1, 0.5, "none", True, seed=cout)


def test_functional_api_and_out_argument():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    w = sparse_weight((5, 4, 3, 3), 0.5, rng)
    ip, ix, v = K.to_csr(w.reshape(5, -1))
    out = K.aligned_empty((1, 5, 3, 3))
    got = K.conv2d_csr(x, ip, ix, v, None, None, out_channels=5, kernel_size=3, stride=2,
                       padding=1, out=out)
    assert got is out and out.ctypes.data % 64 == 0
    assert_close(out, conv_ref(x, w, None, 2, 1, 1, "none"))


def unaligned_copy(a: np.ndarray) -> np.ndarray:
    """`a` in a buffer that starts 4 bytes past a 64-byte boundary."""
    buf = K.aligned_empty((a.size + 16,))
    out = buf[1:1 + a.size].reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % 64 == 4
    return out


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("path", ["gather", "direct", "auto"])
@pytest.mark.parametrize("hw", [(7, 7), (8, 16), (9, 17), (16, 12), (28, 28)])
def test_conv1x1_paths(isa, fmt, path, hw):
    # 1x1/stride 1 runs gathered tiles of 64 positions or reads x in place; both on the same
    # shapes: planes under one tile, whole tiles, a partial last tile, aligned and unaligned x.
    # In place, CSR tiles are twice as long while cin x the tile fits L1 (conv2d-csr.h): 100
    # channels take the long tiles on AVX2 and the short ones on AVX-512.
    h, w = hw
    rng = np.random.default_rng(h * 100 + w)
    with K.use_conv1x1_path(path):
        for n, cin, cout, sparsity, residual in [(1, 40, 36, 0.5, True), (3, 9, 7, 0.8, False),
                                                (1, 3, 130, 0.0, True), (1, 100, 20, 0.9, False)]:
            x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
            wt = sparse_weight((cout, cin, 1, 1), sparsity, rng, block4=fmt == "bsr4x1")
            wt[1] = 0.0  # an empty row
            b = rng.standard_normal(cout).astype(np.float32)
            res = rng.standard_normal((n, cout, h, w)).astype(np.float32) if residual else None
            layer = K.SparseConv2d.from_dense(wt, b, act="relu6", fmt=fmt)
            want = conv_ref(x, wt, b, 1, 0, 1, "relu6", res)
            assert_close(layer(x, res), want)
            assert_close(layer(unaligned_copy(x), res), want)


@pytest.mark.parametrize("path", ["gather", "direct"])
def test_conv1x1_paths_threads(threads, path):
    with K.use_conv1x1_path(path):
        run_case("csr", 2, 70, 66, 23, 21, 1, 1, 0.6, "relu", True, seed=31)
        run_case("bsr4x1", 1, 64, 64, 28, 28, 1, 1, 0.9, "none", False, seed=32)


def test_conv1x1_path_setting():
    assert K.conv1x1_path() in K.CONV1X1_PATHS
    with pytest.raises(Exception, match="conv1x1 path"):
        K.set_conv1x1_path("fast")


@pytest.mark.parametrize("k,stride,w", [(3, 1, 14), (3, 1, 30), (3, 1, 29), (5, 1, 60), (7, 1, 58),
                                        (3, 2, 28), (5, 2, 56), (3, 1, 9)])
def test_wide_row_widths(isa, k, stride, w):
    # Wide rows of 16, 32 and 64 floats (whole vectors), just under and over, and one tile-sized
    # row: the tile passes and their shorter last pass.
    run_case("csr", 1, 7, 13, 5, w, k, stride, 0.6, "relu", True, seed=k * 100 + w)
    run_case("csr", 2, 3, 5, 7, w, k, stride, 0.0, "relu6", False, seed=w)
    run_case("csr", 1, 16, 9, 6, w, k, stride, 0.97, "none", True, seed=w + 1)


@pytest.mark.parametrize("fmt", ["csr", "bsr4x1", "dw-dense", "dw-csr"])
def test_layer_call_paths_agree_and_check(fmt):
    # A layer called with numpy float32 C-contiguous arrays passes its bound weights straight to
    # the kernel; views, float64 and torch go through ops' conversions. Same results, same errors.
    rng = np.random.default_rng(41)
    if fmt.startswith("dw"):
        w = sparse_weight((6, 1, 3, 3), 0.4, rng)
        layer = K.SparseConv2d.from_dense(w, None, padding=1, groups=6, act="relu",
                                          fmt=fmt.split("-")[1])
        groups = 6
    else:
        w = sparse_weight((8, 6, 3, 3), 0.6, rng, block4=fmt == "bsr4x1")
        layer = K.SparseConv2d.from_dense(w, None, padding=1, act="relu", fmt=fmt)
        groups = 1
    x = rng.standard_normal((2, 6, 9, 7)).astype(np.float32)
    want = conv_ref(x, w, None, 1, 1, groups, "relu")
    assert_close(layer(x), want)
    assert_close(layer(x.astype(np.float64)), want)
    wide = np.zeros((2, 6, 9, 14), np.float32)
    wide[..., ::2] = x
    assert_close(layer(wide[..., ::2]), want)  # a strided view
    assert_close(layer(torch.from_numpy(x)).numpy(), want)
    with pytest.raises(K.KernelError):
        layer(rng.standard_normal((2, 5, 9, 7)).astype(np.float32))  # wrong channel count
    with pytest.raises(K.KernelError):
        layer(x, out=K.aligned_empty((2, w.shape[0], 9, 6)))
    with pytest.raises(K.KernelError):
        layer(x, rng.standard_normal((2, w.shape[0], 9, 6)).astype(np.float32))


def test_conv1x1_path_env_typo_is_an_error():
    import os
    import subprocess
    import sys
    code = ("import numpy as np, st_deploy.kernels as K\n"
            "w = np.ones((2, 3, 1, 1), np.float32)\n"
            "layer = K.SparseConv2d.from_dense(w)\n"
            "try:\n"
            "    layer(np.ones((1, 3, 4, 4), np.float32))\n"
            "except K.KernelError as e:\n"
            "    print('ERR', e)\n"
            "K.set_conv1x1_path('auto')\n"
            "print('OK', float(layer(np.ones((1, 3, 4, 4), np.float32)).sum()))\n")
    env = dict(os.environ, ST_KERNELS_CONV1X1="gahter")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert "ERR" in out.stdout and "ST_KERNELS_CONV1X1=gahter" in out.stdout, out.stdout + out.stderr
    assert "OK 96.0" in out.stdout, out.stdout + out.stderr


def _reversed_rows(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, block: int):
    """The same CSR/BSR layer with each row's entries in reverse order (rows need not be sorted)."""
    ix, vals = indices.copy(), values.reshape(len(indices), block).copy()
    for r in range(len(indptr) - 1):
        b, e = indptr[r], indptr[r + 1]
        ix[b:e] = indices[b:e][::-1]
        vals[b:e] = values.reshape(len(indices), block)[b:e][::-1]
    return indptr, ix, vals.reshape(values.shape)


@pytest.mark.parametrize("w", [12, 14, 28, 30, 56, 62])
@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.999])
def test_plans_kx_split_shapes_any_row_order(isa, w, sparsity):
    # 3x3 stride 1 with rows that round up to whole vectors cheaply: the kx-split arrangement on
    # ISAs with lane shifts (conv2d-csr.h), made by a plan, with rows sorted and reversed.
    from st_deploy.kernels._lib import load
    from st_deploy.graph.sparse import to_csr
    rng = np.random.default_rng(w * 7 + int(sparsity * 1000))
    cin, cout, h = 6, 11, 5
    wt = sparse_weight((cout, cin, 3, 3), sparsity, rng)
    wt[3] = 0.0  # an empty row
    b = rng.standard_normal(cout).astype(np.float32)
    x = K.aligned_empty((2, cin, h, w))
    x[...] = rng.standard_normal(x.shape)
    res = rng.standard_normal((2, cout, h, w)).astype(np.float32)
    want = conv_ref(x, wt, b, 1, 1, 1, "relu6", res)
    arrays = to_csr(wt.reshape(cout, -1))
    for ip, ix, v in (arrays, _reversed_rows(*arrays, 1)):
        plan = load().conv2d_plan(ip, ix, v, 1, cin, h, w, cout, 3, 3, 1, 1, 2)
        for _ in range(2):
            out = K.aligned_empty((2, cout, h, w))
            load().conv2d_plan_run(plan, x, b, res, out)
            assert_close(out, want)
        assert_close(K.conv2d_csr(x, ip, ix, v, b, res, out_channels=cout, kernel_size=3,
                                  padding=1, act="relu6"), want)


def test_plan_follows_isa_change():
    # A layer plans at its first call under the default ISA; under another ISA its result must be
    # that ISA's (bit for bit what the per-call API computes there), not the old plan's.
    rng = np.random.default_rng(5)
    wt = sparse_weight((16, 12, 3, 3), 0.8, rng)
    x = K.aligned_empty((1, 12, 9, 30))
    x[...] = rng.standard_normal(x.shape)
    layer = K.SparseConv2d.from_dense(wt, None, padding=1, fmt="csr")
    first = layer(x).copy()
    for name in K.available_isas():
        with K.use_isa(name):
            got = layer(x)
            per_call = layer(torch.from_numpy(x)).numpy()  # the converting path: no plan
            np.testing.assert_array_equal(got, per_call)
    np.testing.assert_array_equal(layer(x), first)


def test_plan_errors_name_the_problem():
    from st_deploy.kernels._lib import load
    lib = load()
    ip = np.array([0, 1, 2], np.int32)
    v = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="out of range"):
        lib.conv2d_plan(ip, np.array([0, 9], np.int32), v, 1, 1, 4, 4, 2, 1, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="block_rows"):
        lib.conv2d_plan(ip, np.array([0, 0], np.int32), v, 2, 1, 4, 4, 2, 1, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="larger than padded input"):
        lib.conv2d_plan(ip, np.array([0, 0], np.int32), v, 1, 1, 2, 2, 2, 3, 3, 1, 0, 0)
    plan = lib.conv2d_plan(ip, np.array([0, 0], np.int32), v, 1, 1, 4, 4, 2, 1, 1, 1, 0, 0)
    x = K.aligned_empty((1, 1, 4, 4))
    with pytest.raises(ValueError, match="expected"):
        lib.conv2d_plan_run(plan, K.aligned_empty((1, 1, 4, 5)), None, None, K.aligned_empty((1, 2, 4, 5)))
    with pytest.raises(ValueError, match="out has shape"):
        lib.conv2d_plan_run(plan, x, None, None, K.aligned_empty((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="bias"):
        lib.conv2d_plan_run(plan, x, np.ones(3, np.float32), None, K.aligned_empty((1, 2, 4, 4)))


@pytest.mark.parametrize("fmt", FMTS)
def test_per_call_api_sees_weights_changed_in_place(fmt):
    # The per-call entry points keep a plan per weight arrays (TVM passes the same constants on
    # every run); arrays edited in place at the same address must be used as they are now, and
    # checked again.
    from st_deploy.graph.sparse import to_bsr4x1, to_csr
    rng = np.random.default_rng(11)
    wt = sparse_weight((8, 5, 3, 3), 0.7, rng, block4=fmt == "bsr4x1")
    ip, ix, v = (to_csr if fmt == "csr" else to_bsr4x1)(wt.reshape(8, -1))
    fn = K.conv2d_csr if fmt == "csr" else K.conv2d_bsr4x1
    x = rng.standard_normal((1, 5, 12, 14)).astype(np.float32)
    kw = dict(out_channels=8, kernel_size=3, padding=1)
    first = fn(x, ip, ix, v, None, **kw)
    assert_close(first, conv_ref(x, wt, None, 1, 1, 1, "none"))
    v *= 2.0
    assert_close(fn(x, ip, ix, v, None, **kw), 2.0 * first)
    ix[0] = 10 ** 6
    with pytest.raises(K.KernelError, match="out of range"):
        fn(x, ip, ix, v, None, **kw)
