"""Dense (masked) weights -> the sparse arrays the kernels take, via scipy.sparse."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def to_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float32)


def to_csr(w2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of a 2-D matrix keeping exactly its nonzeros: (indptr, indices, values)."""
    m = sp.csr_matrix(np.asarray(w2, dtype=np.float32))
    m.sort_indices()
    return (m.indptr.astype(np.int32), m.indices.astype(np.int32),
            np.ascontiguousarray(m.data, dtype=np.float32))


def to_bsr4x1(w2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BSR with 4x1 blocks: rows padded with zeros to a multiple of 4; values are [nnzb, 4]."""
    w2 = np.asarray(w2, dtype=np.float32)
    rows = -(-w2.shape[0] // 4) * 4
    if rows != w2.shape[0]:
        w2 = np.vstack([w2, np.zeros((rows - w2.shape[0], w2.shape[1]), np.float32)])
    m = sp.bsr_matrix(w2, blocksize=(4, 1))
    m.sort_indices()
    return (m.indptr.astype(np.int32), m.indices.astype(np.int32),
            np.ascontiguousarray(m.data.reshape(-1, 4), dtype=np.float32))


def bsr4x1_fill(w2: np.ndarray) -> float:
    """Fraction of stored BSR4x1 values that are real nonzeros (1.0 = blocks fully used)."""
    nnz = int(np.count_nonzero(w2))
    _, indices, _ = to_bsr4x1(w2)
    return nnz / max(1, 4 * len(indices))
