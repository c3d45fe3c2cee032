"""export: a Ticket (or its compacted Graph) -> deployable artifacts. Only this stage writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import DeployError
from ..graph.ir import Graph
from ..graph.module import GraphModule
from ..ticket import Ticket

__all__ = ["export", "graph_of"]
TARGETS = ("onnx", "llvm", "aarch64", "rasp4", "cuda", "a TVM target dict or JSON")


def graph_of(obj: Ticket | Graph | GraphModule) -> tuple[Graph, Callable[[Any], Any], dict[str, str], tuple | None]:
    """(compacted graph, torch reference, provenance, default input shape) of what export was given.

    The reference is the ticket's own module, not the compacted graph: fidelity is measured
    against what the user handed in.
    """
    if isinstance(obj, Graph):
        return obj, GraphModule(obj), {}, None
    if isinstance(obj, GraphModule):
        return obj.to_graph(), obj, {}, None
    if not isinstance(obj, Ticket):
        raise DeployError(f"export takes a Ticket or a Graph, not {type(obj).__name__}")
    source = {"name": obj.name, "path": obj.source, "sha256": obj.sha256}
    if isinstance(obj.module, GraphModule):
        graph = obj.module.to_graph()
    else:
        try:
            from ..compact import compact
        except ImportError:
            raise DeployError(f"ticket {obj.name or obj.source!r}: exporting needs its compacted graph and "
                              f"st_deploy.compact is not available in this install") from None
        graph = compact(obj).graph
    return graph, obj.module, source, tuple(obj.default_input_shape)


def export(ticket_or_graph: Ticket | Graph | GraphModule, target: str = "onnx", out: str | Path | None = None,
           input_shape: tuple[int, ...] | None = None, format: str = "auto", tolerance: float = 1e-4,
           force: bool = False, cost_table: Any = None) -> Path:
    """Write the artifacts for `target` into the folder `out` (atomically) and return it.

    onnx: model.dense.onnx (standard ops), model.sparse.onnx (st.sparse::SparseConv where the plan
    says sparse), manifest.json (plan, provenance, versions, fidelity). `format` is the planner's
    mode (auto | dense | sparse). Raises FidelityError, writing nothing, when either model's
    relative error against the ticket exceeds `tolerance`.
    """
    if out is None:
        raise DeployError("export needs an output folder (out=...)")
    graph, reference, source, default_shape = graph_of(ticket_or_graph)
    shape = tuple(input_shape) if input_shape is not None else default_shape
    if shape is None:
        raise DeployError("export of a bare graph needs input_shape=(N, C, H, W)")
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise DeployError(f"input_shape {shape}: expected four positive ints (N, C, H, W)")
    if target != "onnx":
        # Every other target is a TVM target: friendly name, "cuda --arch sm_XX", dict or JSON.
        from .tvm import export_tvm
        return export_tvm(ticket_or_graph, target, out, input_shape=shape, plan=format, tolerance=tolerance,
                          force=force)
    from .onnx import export_onnx
    return export_onnx(graph, reference, out, shape, format=format, tolerance=tolerance, force=force,
                       source=source, cost_table=cost_table)
