"""Residual chains: the adds whose conv inputs can take the sum as their kernel's epilogue.

Shared by the exporters (export/onnx/sparse_ops.py, export/tvm/relax_graph.py); each says which
convs its kernels can absorb.
"""

from __future__ import annotations

from typing import Callable

from .ir import Graph, Node


def residual_chains(graph: Graph, absorbable: Callable[[str, Node], bool]) -> dict[str, tuple[list[str], list[str]]]:
    """add node name -> (convs it absorbs, in chain order; the add's other inputs).

    An n-ary add of branch outputs (SuperTickets' multi-kernel blocks sum 2-7 branches) becomes a
    chain: each absorbed conv is emitted at the add and takes the running sum as its residual, so
    no add is left. A conv input is absorbed when absorbable(conv, add) says its kernel can, the
    add is its single reader, it is not a graph output, and it is not repeated among the inputs.
    """
    readers = graph.consumers()
    outputs = set(graph.outputs)
    chains: dict[str, tuple[list[str], list[str]]] = {}
    for n in graph.nodes:
        if n.op != "add" or len(n.inputs) < 2:
            continue
        convs = [i for i in n.inputs if i not in outputs and n.inputs.count(i) == 1
                 and [r.name for r in readers.get(i, [])] == [n.name] and absorbable(i, n)]
        if not convs:
            continue
        others = [i for i in n.inputs if i not in convs]
        if not others:
            # The first branch runs on its own and seeds the sum; it is emitted where it stands.
            others, convs = [convs[0]], convs[1:]
            if not convs:
                continue
        chains[n.name] = (convs, others)
    return chains
