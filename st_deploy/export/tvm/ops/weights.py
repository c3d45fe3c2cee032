"""A layer's weight as the kernels' arguments (indptr, indices, values), from the one encoder
(st_deploy.graph.sparse): the plan's sparse formats store the mask's live entries; a dense layer
run by a sparse kernel stores every entry (zeros included), so it still does every multiply-add
of a dense layer."""

from __future__ import annotations

from typing import Any

from ....graph.ir import Node
from ....graph.kinds import layer_kind
from ....graph.sparse import all_live, encode


def kernel_arrays(n: Node, fmt: str, every_entry: bool = False) -> tuple[Any, Any, Any]:
    """fmt: csr or bsr4x1 (values [nnzb, 4], as conv2d_bsr takes them); every_entry: all live."""
    w = n.params["weight"]
    mask = all_live(w) if every_entry else n.params.get("mask")
    a = encode(fmt, w, mask, layer_kind(n), int(n.attrs.get("groups", 1)))
    return a.indptr, a.indices, (a.values.reshape(-1, 4) if fmt == "bsr4x1" else a.values)
