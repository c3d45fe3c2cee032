"""Sparse weight encodings: the one encoder of every stage (planner, ONNX and TVM exporters, the CPU
and CUDA kernel layers), in the formats kernels/include/st_kernels.h defines.

Live. An entry is live where the layer's mask is nonzero; where there is no mask (a layer the
ticket does not prune, or a matrix handed to the kernels directly), where the weight is nonzero.
A live entry is stored even when its trained weight is exactly 0, so the pattern stored is the
ticket's: the nonzero count the planner priced, the sparsity the manifests report and the
multiply-adds the kernels do are one number. A dense layer run by a sparse kernel passes an
all-live mask (every position stored, zeros included).

  csr     rows = output channels, columns = flattened (ci, ky, kx) = weight.reshape(rows, -1);
          indptr[rows + 1], indices[nnz] (ascending within a row), values[nnz]
  bsr4x1  blocks of 4 rows x 1 column; block row b covers rows 4b..4b+3 (the last one padded
          with zero rows); a block is stored when any of its 4 entries is live, its other entries
          as zeros; indptr[ceil(rows/4) + 1], indices[nnzb], values[nnzb, 4] (block-major)
  dwcsr   depthwise [C, 1, k, k]: the csr of weight.reshape(C, k*k), the column being the tap ky*k + kx
  grouped [O, I/g, kh, kw]: the csr of the groups=1 weight it equals (block_diagonal)

csr / bsr4x1 take torch tensors on any device and return int32 indptr and indices and float32
values on it; encode() returns numpy arrays for the exporters; to_csr / to_bsr4x1 take and
return numpy or torch alike (the kernels' Python API).

This module imports only torch: st_deploy.kernels.cuda loads it from its file on machines that
lack the package's other dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

FORMATS = ("dense", "csr", "bsr4x1")


def _tensor(a: Any) -> torch.Tensor:
    t = a.detach() if isinstance(a, torch.Tensor) else torch.as_tensor(a)
    return t.to(torch.float32)


def live(weight: Any, mask: Any = None) -> torch.Tensor:
    """Boolean tensor of the live entries (weight's shape): the mask's nonzeros, else the weight's."""
    return (_tensor(mask) != 0) if mask is not None else (_tensor(weight) != 0)


def sparsity(weight: Any, mask: Any = None) -> float:
    lv = live(weight, mask)
    return 1.0 - float(lv.sum()) / max(1, lv.numel())


def csr(weight: Any, mask: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    w = _tensor(weight)
    w = w.reshape(w.shape[0], -1)
    lv = live(weight, mask).reshape(w.shape)
    rows, cols = lv.nonzero(as_tuple=True)  # row-major order, so columns ascend within a row
    indptr = torch.zeros(w.shape[0] + 1, dtype=torch.int64, device=w.device)
    indptr[1:] = torch.cumsum(lv.sum(dim=1), 0)
    return indptr.to(torch.int32), cols.to(torch.int32), w[rows, cols].contiguous()


def bsr4x1(weight: Any, mask: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    w = _tensor(weight)
    rows = w.shape[0]
    w = w.reshape(rows, -1)
    lv = live(weight, mask).reshape(w.shape)
    nbr = (rows + 3) // 4
    pad = nbr * 4 - rows
    # A stored block's entries that are not live hold zeros (the weight is masked already, but
    # a caller's mask may be stricter than its weight).
    wp = torch.cat([w * lv, w.new_zeros(pad, w.shape[1])]).reshape(nbr, 4, -1)
    lp = torch.cat([lv, lv.new_zeros(pad, w.shape[1])]).reshape(nbr, 4, -1).any(dim=1)
    brows, cols = lp.nonzero(as_tuple=True)
    indptr = torch.zeros(nbr + 1, dtype=torch.int64, device=w.device)
    indptr[1:] = torch.cumsum(lp.sum(dim=1), 0)
    return indptr.to(torch.int32), cols.to(torch.int32), wp[brows, :, cols].contiguous()  # [nnzb, 4]


def bsr4x1_fill(weight: Any, mask: Any = None) -> float:
    """Live fraction of the values a 4x1 BSR stores (1.0 = no wasted multiplies, and for no entries)."""
    nnz = int(live(weight, mask).sum())
    if nnz == 0:
        return 1.0
    return nnz / bsr4x1(weight, mask)[2].numel()


def block_diagonal(v: Any, groups: int) -> torch.Tensor:
    """A grouped conv's weight (or mask) [O, I/g, kh, kw] as the groups=1 weight [O, I, kh, kw] it
    equals: zero outside each output channel's own group of input channels."""
    v = torch.as_tensor(v).detach()
    o, ig = v.shape[:2]
    full = v.new_zeros(o, ig * groups, *v.shape[2:])
    per = o // groups
    for g in range(groups):
        full[g * per:(g + 1) * per, g * ig:(g + 1) * ig] = v[g * per:(g + 1) * per]
    return full


@dataclass(frozen=True)
class SparseArrays:
    """numpy arrays ready to become ONNX initializers or Relax constants."""
    format: str     # "csr", "bsr4x1" or "dwcsr"
    indptr: Any     # int32
    indices: Any    # int32
    values: Any     # float32; flat (bsr4x1: 4 * nnzb, block-major)

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])


def encode(fmt: str, weight: Any, mask: Any, kind: str, groups: int = 1) -> SparseArrays:
    """A conv/linear layer's weight in `fmt` for its layer kind (graph.kinds): depthwise ("dw")
    as dwcsr, grouped as the csr of its block-diagonal weight, the others csr or bsr4x1."""
    if kind == "grouped":
        assert fmt == "csr", fmt  # the planner offers grouped convs dense or csr only
        arrays = csr(block_diagonal(weight, groups), None if mask is None else block_diagonal(mask, groups))
    elif kind == "dw":
        assert fmt == "csr", fmt  # the planner offers depthwise layers dense or csr only
        arrays, fmt = csr(weight, mask), "dwcsr"
    elif fmt == "csr":
        arrays = csr(weight, mask)
    elif fmt == "bsr4x1":
        arrays = bsr4x1(weight, mask)
    else:
        raise AssertionError(f"no encoder for format {fmt!r}")
    indptr, indices, values = (a.cpu().numpy() for a in arrays)
    return SparseArrays(fmt, indptr, indices, values.reshape(-1))


def all_live(weight: Any) -> torch.Tensor:
    """The mask of a dense layer run by a sparse kernel: every entry stored."""
    return torch.ones_like(_tensor(weight))


def _like(a: Any, arrays: tuple[torch.Tensor, ...]) -> tuple[Any, ...]:
    return arrays if isinstance(a, torch.Tensor) else tuple(t.numpy() for t in arrays)


def to_csr(w2: Any) -> tuple[Any, Any, Any]:
    """CSR of a 2-D matrix's nonzeros (no mask): numpy in, numpy out; torch in, torch out (same device)."""
    return _like(w2, csr(w2))


def to_bsr4x1(w2: Any) -> tuple[Any, Any, Any]:
    """BSR 4x1 of a 2-D matrix's nonzeros, values [nnzb, 4]: numpy or torch, as to_csr."""
    return _like(w2, bsr4x1(w2))
