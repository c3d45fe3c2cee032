"""graph.sparse: the one encoder, and its one meaning of "live" (the mask's entries, else the nonzeros)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from st_deploy.graph.sparse import (all_live, block_diagonal, bsr4x1, bsr4x1_fill, csr, encode, live, sparsity,
                                    to_bsr4x1, to_csr)


def _dense_from_csr(indptr, indices, values, rows: int, cols: int) -> np.ndarray:
    m = np.zeros((rows, cols), np.float32)
    for r in range(rows):
        for j in range(indptr[r], indptr[r + 1]):
            m[r, indices[j]] = values[j]
    return m


def _dense_from_bsr(indptr, indices, values, rows: int, cols: int) -> np.ndarray:
    values = np.asarray(values).reshape(-1, 4)
    m = np.zeros((len(indptr) - 1) * 4 * cols, np.float32).reshape(-1, cols)
    for b in range(len(indptr) - 1):
        for j in range(indptr[b], indptr[b + 1]):
            m[4 * b:4 * b + 4, indices[j]] = values[j]
    return m


def _masked(shape, keep: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g)
    mask = (torch.rand(shape, generator=g) < keep).float()
    return w * mask, mask


def test_encodings_reconstruct_the_weight() -> None:
    w, mask = _masked((10, 3, 3, 3), 0.3, 0)
    w[0, 0, 0, 0], mask[0, 0, 0, 0] = 0.0, 1.0  # a live weight that happens to be 0 stays live
    ref = w.reshape(10, -1).numpy()
    a = encode("csr", w, mask, "conv")
    assert a.indptr.dtype == np.int32 and a.indices.dtype == np.int32 and a.values.dtype == np.float32
    assert a.format == "csr" and a.nnz == int(mask.sum())
    np.testing.assert_array_equal(_dense_from_csr(a.indptr, a.indices, a.values, 10, 27), ref)
    b = encode("bsr4x1", w, mask, "conv")
    assert len(b.indptr) == 4 and b.values.shape == (4 * b.nnz,)  # ceil(10 / 4) block rows, values flat
    rebuilt = _dense_from_bsr(b.indptr, b.indices, b.values, 10, 27)
    np.testing.assert_array_equal(rebuilt[:10], ref)
    assert not rebuilt[10:].any()
    dw, dmask = _masked((6, 1, 3, 3), 0.5, 1)
    d = encode("csr", dw, dmask, "dw")
    assert d.format == "dwcsr"
    np.testing.assert_array_equal(_dense_from_csr(d.indptr, d.indices, d.values, 6, 9), dw.reshape(6, 9).numpy())


def test_live_is_the_mask_where_there_is_one_else_the_nonzeros() -> None:
    w, mask = _masked((8, 4, 1, 1), 0.5, 2)
    w[mask.bool()] = torch.where(torch.arange(int(mask.sum())) % 3 == 0, 0.0, w[mask.bool()])  # live zeros
    assert torch.equal(live(w, mask), mask.bool())
    assert torch.equal(live(w), w != 0) and int(live(w).sum()) < int(mask.sum())
    assert encode("csr", w, mask, "conv1x1").nnz == int(mask.sum())
    assert encode("csr", w, None, "conv1x1").nnz == int((w != 0).sum())
    assert sparsity(w, mask) == pytest.approx(1 - float(mask.mean()))
    # bsr4x1: a block is stored when one of its 4 entries is live; block_fill counts live / stored
    _, indices, values = bsr4x1(w, mask)
    assert values.shape == (indices.shape[0], 4)
    assert bsr4x1_fill(w, mask) == pytest.approx(float(mask.sum()) / values.numel())
    assert bsr4x1_fill(torch.zeros(5, 3)) == 1.0


def test_dense_layers_through_sparse_kernels_store_every_entry() -> None:
    w, _ = _masked((6, 5, 3, 3), 0.4, 3)
    a = encode("bsr4x1", w, all_live(w), "conv")
    assert a.nnz == 2 * 45 and np.array_equal(a.indptr, [0, 45, 90])  # every column of both block rows
    np.testing.assert_array_equal(_dense_from_bsr(a.indptr, a.indices, a.values, 6, 45)[:6], w.reshape(6, -1).numpy())
    g = encode("csr", w, all_live(w), "grouped", groups=2)  # [6, 5, 3, 3] as a groups=2 weight: 10 inputs
    full = block_diagonal(w, 2)
    assert tuple(full.shape) == (6, 10, 3, 3) and g.nnz == 6 * 45
    np.testing.assert_array_equal(_dense_from_csr(g.indptr, g.indices, g.values, 6, 90), full.reshape(6, -1).numpy())
    assert not full[:3, 5:].any() and not full[3:, :5].any()


def test_grouped_sparse_keeps_the_mask_inside_each_group() -> None:
    w, mask = _masked((4, 2, 3, 3), 0.5, 4)
    a = encode("csr", w, mask, "grouped", groups=2)
    assert a.nnz == int(mask.sum())
    np.testing.assert_array_equal(_dense_from_csr(a.indptr, a.indices, a.values, 4, 36),
                                  block_diagonal(w, 2).reshape(4, -1).numpy())


def test_kernel_helpers_keep_the_array_kind() -> None:
    w, _ = _masked((7, 9), 0.3, 5)
    for fn in (to_csr, to_bsr4x1):
        from_np, from_torch = fn(w.numpy()), fn(w)
        assert all(isinstance(a, np.ndarray) for a in from_np) and all(isinstance(a, torch.Tensor) for a in from_torch)
        for a, b in zip(from_np, from_torch):
            assert a.dtype == b.numpy().dtype and np.array_equal(a, b.numpy())
    ip, ix, v = to_csr(w.numpy())
    np.testing.assert_array_equal(_dense_from_csr(ip, ix, v, 7, 9), w.numpy())
    ip, ix, v = csr(w)
    assert ip.dtype == ix.dtype == torch.int32 and v.dtype == torch.float32
