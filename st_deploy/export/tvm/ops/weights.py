"""Weight arrays for the kernels: the plan's sparse formats, and full-density BSR for dense convs.

A dense layer run by a sparse kernel must still do every multiply-add of a dense layer, so its
pattern lists every weight position (zeros included) instead of dropping the masked ones; the
sparse formats keep exactly the nonzeros (st_deploy.kernels.formats).
"""

from __future__ import annotations

import numpy as np

from ....kernels.formats import to_bsr4x1, to_csr


def full_bsr4x1(w2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = w2.shape
    padded = -(-rows // 4) * 4
    w = np.zeros((padded, cols), np.float32)
    w[:rows] = w2
    # block (b, c) holds rows 4b..4b+3 of column c, row 4b first (st_kernels.h BSR4x1).
    values = w.reshape(padded // 4, 4, cols).transpose(0, 2, 1).reshape(-1, 4)
    return (np.arange(padded // 4 + 1, dtype=np.int32) * cols,
            np.tile(np.arange(cols, dtype=np.int32), padded // 4), np.ascontiguousarray(values))


def block_diagonal_csr(w: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of a grouped conv's weight [O, I/g, kh, kw] as a groups=1 weight [O, I*kh*kw]:
    row o lists every (zero or not) tap of its own group's input channels."""
    o, ig, kh, kw = w.shape
    per = ig * kh * kw
    og = o // groups
    cols = (np.arange(o, dtype=np.int64)[:, None] // og) * per + np.arange(per)[None, :]
    return (np.arange(o + 1, dtype=np.int32) * per, cols.reshape(-1).astype(np.int32),
            np.ascontiguousarray(w.reshape(o, per), dtype=np.float32).reshape(-1))


def sparse_arrays(w2: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if fmt == "csr":
        return to_csr(w2)
    if fmt == "bsr4x1":
        return to_bsr4x1(w2)
    raise AssertionError(f"no sparse arrays for format {fmt!r}")
