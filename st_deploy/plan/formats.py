"""Sparse weight encodings, exactly as kernels/include/st_kernels.h defines them.

  csr     rows = output channels, columns = flattened (ci, ky, kx) = weight.reshape(cout, -1);
          indptr[cout + 1], indices[nnz], values[nnz]
  bsr4x1  blocks of 4 output channels x 1 column; block row b covers channels 4b..4b+3 (the last
          one padded with zero rows); indptr[ceil(cout/4) + 1], indices[nnzb], values[4 * nnzb],
          block-major (the 4 values of block j are values[4j .. 4j+3])
  dwcsr   depthwise: per channel, the live taps ky * k + kx and their values

Which entries are live comes from the layer's mask (the weight is already masked); a layer
without a mask keeps its nonzero weights. Every encoder returns numpy arrays ready to become
ONNX initializers (int32 indices, float32 values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

FORMATS = ("dense", "csr", "bsr4x1")


@dataclass(frozen=True)
class SparseArrays:
    format: str            # "csr", "bsr4x1" or "dwcsr"
    indptr: np.ndarray     # int32
    indices: np.ndarray    # int32
    values: np.ndarray     # float32

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])


def live_mask(weight: torch.Tensor, mask: torch.Tensor | None) -> np.ndarray:
    """Boolean array of live weights: the mask where there is one, else the nonzeros."""
    live = (mask != 0) if mask is not None else (weight != 0)
    return live.detach().cpu().numpy().astype(bool)


def sparsity_of(weight: torch.Tensor, mask: torch.Tensor | None) -> float:
    live = live_mask(weight, mask)
    return 1.0 - float(live.sum()) / max(1, live.size)


def encode_csr(weight: torch.Tensor, mask: torch.Tensor | None) -> SparseArrays:
    w = weight.detach().cpu().numpy().astype(np.float32).reshape(weight.shape[0], -1)
    live = live_mask(weight, mask).reshape(w.shape)
    rows, cols = np.nonzero(live)  # row-major order, so columns ascend within a row
    indptr = np.zeros(w.shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=w.shape[0]), out=indptr[1:])
    return SparseArrays("csr", indptr, cols.astype(np.int32), w[rows, cols].astype(np.float32))


def encode_bsr4x1(weight: torch.Tensor, mask: torch.Tensor | None) -> SparseArrays:
    cout = weight.shape[0]
    w = weight.detach().cpu().numpy().astype(np.float32).reshape(cout, -1)
    live = live_mask(weight, mask).reshape(w.shape)
    nbr = (cout + 3) // 4
    pad = nbr * 4 - cout
    # A block is live when any of its 4 rows is; its dead rows carry their (masked, zero) weights.
    wp = np.concatenate([w * live, np.zeros((pad, w.shape[1]), np.float32)]).reshape(nbr, 4, -1)
    lp = np.concatenate([live, np.zeros((pad, w.shape[1]), bool)]).reshape(nbr, 4, -1).any(axis=1)
    brows, cols = np.nonzero(lp)
    indptr = np.zeros(nbr + 1, dtype=np.int32)
    np.cumsum(np.bincount(brows, minlength=nbr), out=indptr[1:])
    values = wp[brows, :, cols].reshape(-1).astype(np.float32)  # [nnzb, 4] block-major
    return SparseArrays("bsr4x1", indptr, cols.astype(np.int32), values)


def encode_dwcsr(weight: torch.Tensor, mask: torch.Tensor | None) -> SparseArrays:
    """Depthwise [C, 1, k, k]: per channel the live taps (tap id ky * k + kx)."""
    arrays = encode_csr(weight, mask)  # weight.reshape(C, k*k): the column is the tap id
    return SparseArrays("dwcsr", arrays.indptr, arrays.indices, arrays.values)


def block_diagonal(v: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped conv's weight (or mask) [O, I/g, kh, kw] as the groups=1 weight [O, I, kh, kw] it
    equals: zero outside each output channel's own group of input channels."""
    o, ig = v.shape[:2]
    full = torch.zeros(o, ig * groups, *v.shape[2:], dtype=v.dtype)
    per = o // groups
    for g in range(groups):
        full[g * per:(g + 1) * per, g * ig:(g + 1) * ig] = v[g * per:(g + 1) * per]
    return full


def encode(fmt: str, weight: torch.Tensor, mask: torch.Tensor | None, depthwise: bool,
           groups: int = 1) -> SparseArrays:
    """groups > 1 (not depthwise): the block-diagonal groups=1 CSR of the grouped conv."""
    if groups > 1 and not depthwise:
        assert fmt == "csr", fmt  # the planner offers grouped convs dense or csr only
        return encode_csr(block_diagonal(weight, groups), None if mask is None else block_diagonal(mask, groups))
    if depthwise:
        assert fmt == "csr", fmt  # the planner offers depthwise layers dense or csr only
        return encode_dwcsr(weight, mask)
    if fmt == "csr":
        return encode_csr(weight, mask)
    if fmt == "bsr4x1":
        return encode_bsr4x1(weight, mask)
    raise AssertionError(f"no encoder for format {fmt!r}")


def block_fill(weight: torch.Tensor, mask: torch.Tensor | None) -> float:
    """Live fraction of the values a 4x1 BSR stores (1.0 = no wasted multiplies)."""
    live = live_mask(weight, mask).reshape(weight.shape[0], -1)
    nnz = int(live.sum())
    if nnz == 0:
        return 1.0
    arrays = encode_bsr4x1(weight, mask)
    return nnz / max(1, arrays.values.shape[0])
