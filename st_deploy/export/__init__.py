"""export: a Ticket (or its compacted Graph) -> deployable artifacts. Only this stage writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DeployError
from ..graph.ir import Graph
from ..graph.module import GraphModule
from ..ticket import Ticket
from .onnx import export_onnx
from .source import Source, resolve

__all__ = ["export", "resolve", "Source"]
TARGETS = ("onnx", "llvm", "aarch64", "rasp4", "cuda", "a TVM target dict or JSON")


def export(ticket_or_graph: Ticket | Graph | GraphModule | Source, target: str = "onnx", out: str | Path | None = None,
           input_shape: tuple[int, ...] | None = None, format: str = "auto", tolerance: float = 1e-4,
           force: bool = False, cost_table: Any = None) -> Path:
    """Write the artifacts for `target` into the folder `out` (atomically) and return it.

    onnx: model.dense.onnx (standard ops), model.sparse.onnx (st.sparse::SparseConv where the plan
    says sparse), manifest.json (plan, provenance, versions, fidelity). `format` is the planner's
    mode (auto | dense | sparse). Raises FidelityError, writing nothing, when either model's
    relative error against the ticket exceeds `tolerance`. cost_table (a path or CostTable)
    prices format="auto"/"sparse" instead of the target's own table (st_deploy.plan.cost).
    """
    if out is None:
        raise DeployError("export needs an output folder (out=...)")
    src = resolve(ticket_or_graph, input_shape)
    if target != "onnx":
        # Every other target is a TVM target: friendly name, "cuda --arch sm_XX", dict or JSON.
        # Imported here, not above: TVM takes 1.4 s to import, which no ONNX export should pay.
        from .tvm import export_tvm
        return export_tvm(src, target, out, plan=format, tolerance=tolerance, force=force, cost_table=cost_table)
    return export_onnx(src.graph, src.reference, out, src.input_shape, format=format, tolerance=tolerance,
                       force=force, source=src.provenance, cost_table=cost_table, compaction=src.compaction)
