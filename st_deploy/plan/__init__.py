"""plan: a storage format per conv/linear layer (dense, csr or bsr4x1), chosen by predicted time.

Needs a Graph (conv2d/linear nodes carrying `mask` where unstructured sparsity remains) and the
input shape. Promises one LayerPlan per conv2d/linear node saying which path it takes and why;
nothing falls back silently: a layer no sparse kernel supports is planned dense with the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import DeployError
from ..graph.ir import Graph
from ..graph.kinds import format_of, is_conv, is_layer, layer_kind, planned, sparse_formats  # noqa: F401  (re-exported)
from .cost import CostTable, default_table, load_table, work
# Loaded here, before `def tune` below: loading the submodule plan/tune.py binds the package's `tune` to
# it, so a first import after this file ran (tune() itself, or board/tuning.py) replaced the function.
from .tune import run_tune
from ..graph.shapes import infer_shapes
from ..graph.sparse import sparsity

__all__ = ["LayerPlan", "Plan", "plan", "planned", "format_of", "tune", "layer_kind"]

MODES = ("auto", "dense", "sparse")


@dataclass(frozen=True)
class LayerPlan:
    name: str
    op: str                      # conv2d | linear
    kind: str                    # conv1x1 | conv | dw | linear | grouped | general
    weight_shape: tuple[int, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    sparsity: float
    format: str                  # dense | csr | bsr4x1
    predicted_us: dict[str, float]  # every format the table could price for this layer
    reason: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["predicted_us"] = {k: round(v, 3) for k, v in self.predicted_us.items()}
        return d


@dataclass(frozen=True)
class Plan:
    target: str
    mode: str
    cost_table: str                 # the table's path, or "default" (the shipped one)
    layers: list[LayerPlan] = field(default_factory=list)
    cost_table_note: str = ""       # what measured that table, on what, and why it was taken (CostTable.describe)

    def format_of(self, name: str) -> str:
        for lp in self.layers:
            if lp.name == name:
                return lp.format
        raise KeyError(name)

    def formats(self) -> dict[str, str]:
        """{layer name: format}, as st_deploy.plan.planned takes it."""
        return {lp.name: lp.format for lp in self.layers}

    def predicted_total_us(self) -> float:
        return sum(lp.predicted_us.get(lp.format, 0.0) for lp in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "mode": self.mode, "cost_table": self.cost_table,
                "cost_table_note": self.cost_table_note,
                "predicted_total_us": round(self.predicted_total_us(), 3),
                "layers": [lp.to_dict() for lp in self.layers]}


def _priced_as(kind: str, w: Any) -> str:
    """The cost table's kind for a layer: grouped and general convs are priced as plain convs."""
    if kind in ("grouped", "general"):
        return "conv1x1" if tuple(w.shape[2:]) == (1, 1) and kind == "grouped" else "conv"
    return kind


def plan(graph: Graph, target: str = "llvm", format: str = "auto", cost_table: CostTable | str | Path | None = None,
         input_shape: tuple[int, ...] | None = None, shapes: dict[str, tuple[int, ...]] | None = None,
         backend: str = "tvm") -> Plan:
    """A format per conv/linear layer of `graph` at `input_shape` (batch 1 assumed by the table).

    format: "auto" picks the fastest predicted format; "dense" keeps every layer dense; "sparse"
    takes the fastest sparse format for every layer a sparse kernel supports.
    target: the machine whose cost table prices the formats; backend ("onnx" or "tvm"): which
    kernels exist (graph.kinds.sparse_formats), and which runtime's table prices them when
    cost_table is None (plan.cost.default_table: a board's TVM table for the tvm backend).
    """
    if format not in MODES:
        raise DeployError(f"format {format!r}: choose one of {', '.join(MODES)}")
    if shapes is None:
        if input_shape is None:
            raise DeployError("plan needs the input shape (N, C, H, W)")
        shapes = infer_shapes(graph, input_shape)
    table = (cost_table if isinstance(cost_table, CostTable)
             else load_table(cost_table) if cost_table is not None else default_table(target, backend))
    layers = []
    for n in graph.nodes:
        if not is_layer(n):
            continue
        kind = layer_kind(n)
        w = n.params["weight"]
        out_shape = shapes[n.name]
        out_pixels = out_shape[2] * out_shape[3] if is_conv(n) else 1
        dense_macs = float(w.numel() * out_pixels)
        sp = sparsity(w, n.params.get("mask"))
        options = ("dense",) + sparse_formats(kind, backend)
        pred: dict[str, float] = {}
        for fmt in options:
            t = table.predict(_priced_as(kind, w), fmt, dense_macs, sp,
                              work(n, fmt, out_pixels))
            if t is not None:
                pred[fmt] = t
        fmt, reason = _choose(format, kind, options, pred, table.source)
        layers.append(LayerPlan(n.name, n.op, kind, tuple(w.shape), tuple(shapes[n.inputs[0]]), tuple(out_shape),
                                round(sp, 4), fmt, pred, reason))
    # A table the caller chose carries no note; one for another target says so.
    note = table.describe() + (f"; given for target {target}" if table.target != target and not table.note else "")
    return Plan(target, format, table.source, layers, note)


def _choose(mode: str, kind: str, options: tuple[str, ...], pred: dict[str, float], source: str) -> tuple[str, str]:
    sparse = [f for f in options if f != "dense"]
    if mode == "dense":
        return "dense", "format=dense"
    if not sparse:
        what = "dilated, non-square or per-axis strided/padded convs" if kind == "general" else f"{kind} layers"
        return "dense", f"no sparse kernel for {what}"
    if mode == "sparse":
        priced = [f for f in sparse if f in pred]
        best = min(priced, key=pred.__getitem__) if priced else sparse[0]
        return best, "format=sparse" + ("" if priced else " (no cost data: first sparse format)")
    priced = [f for f in options if f in pred]
    if "dense" not in priced:
        kind_ = "conv" if kind in ("grouped", "general") else kind
        raise DeployError(f"cost table {source} has no dense {kind_} measurements; tune with {kind_} shapes "
                          f"or pass format='dense'/'sparse'")
    best = min(priced, key=pred.__getitem__)
    unpriced = [f for f in sparse if f not in pred]
    note = f" ({', '.join(unpriced)} not in the cost table)" if unpriced else ""
    return best, f"fastest predicted{note}"


def tune(target: str = "llvm", shapes: Iterable[dict[str, Any]] | None = None, quick: bool = False,
         out: str | Path | None = None) -> Path:
    """Measure dense and sparse layer times at `shapes` and write the cost table; returns its path.

    shapes: dicts {kind: conv1x1 | conv | dw | linear, cin, cout, k, stride, hw} (default: the
    representative set in plan/tune.py; quick: a subset and fewer sparsities). out: where to write
    (default: this machine's cache file under ~/.cache/st-deploy/, which plan() then prefers over
    the shipped table). Only target "llvm" (this CPU) can be measured.
    """
    return run_tune(target, shapes, quick, out)
