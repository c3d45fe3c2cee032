"""What an exporter is given, resolved once: the compacted graph, the torch reference, provenance,
compaction's report and the input shape.

Every exporter measures fidelity against the ticket's own module, not the compacted graph: what
the user handed in is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..compact import compact
from ..errors import DeployError
from ..graph.ir import Graph
from ..graph.module import GraphModule
from ..ticket import Ticket


@dataclass(frozen=True)
class Source:
    graph: Graph                                # compacted, conv/linear nodes with their remaining masks
    reference: Callable[[Any], Any]             # torch callable computing the ticket's outputs
    provenance: dict[str, str]                  # name, path, sha256 of the ticket file
    input_shape: tuple[int, int, int, int]
    compaction: dict[str, Any]                  # compaction's report, or {"not_run": why}


def resolve(obj: "Ticket | Graph | GraphModule | Source", input_shape: tuple[int, ...] | None = None) -> Source:
    """Compact a Ticket (once), or take a Graph / GraphModule as it is; check the input shape."""
    if isinstance(obj, Source):
        return obj
    default: tuple | None = None
    given_graph = {"not_run": "the exporter was given a graph, compacted or not, and exported it as it is"}
    if isinstance(obj, Graph):
        graph, reference, provenance, report = obj, GraphModule(obj), {}, given_graph
    elif isinstance(obj, GraphModule):
        graph, reference, provenance, report = obj.to_graph(), obj, {}, given_graph
    elif isinstance(obj, Ticket):
        provenance = {"name": obj.name, "path": obj.source, "sha256": obj.sha256}
        if isinstance(obj.module, GraphModule):
            graph = obj.module.to_graph()
            report = {"not_run": "the ticket holds a compacted graph already (a compact.pt); its report was "
                                 "printed when it was made"}
        else:
            done = compact(obj)
            graph, report = done.graph, done.report
        reference, default = obj.module, tuple(obj.default_input_shape)
    else:
        raise DeployError(f"export takes a Ticket or a Graph, not {type(obj).__name__}")
    shape = tuple(input_shape) if input_shape is not None else default
    if shape is None:
        raise DeployError("export of a bare graph needs input_shape=(N, C, H, W)")
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise DeployError(f"input_shape {shape}: expected four positive ints (N, C, H, W)")
    return Source(graph, reference, provenance, shape, report)  # type: ignore[arg-type]
