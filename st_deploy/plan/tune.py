"""`st-deploy tune`: measure dense and sparse layer times here and cache them as a cost table.

Each point is one layer run alone in onnxruntime, exactly as it runs inside an exported sparse
model: dense layers as ORT Conv/Gemm at the sparse model's optimisation level, sparse ones as
st.sparse::SparseConv, one thread, batch 1, median of interleaved repeats less the measured
per-run overhead of an empty model. A board's table, timed in TVM over RPC with the same shapes
and point schema: st_deploy/board/tuning.py.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from ..errors import DeployError
from ..graph.ir import Graph, Node
from ..graph.kinds import is_conv
from .cost import TABLE_VERSION, cached_table_path, machine_id, work

# (kind, cin, cout, k, stride, hw): the layer kinds of MobileNet / SuperTickets-like networks, down
# to layers of a few microseconds, where the per-call cost rather than throughput decides.
DEFAULT_SHAPES: list[dict[str, Any]] = [
    *({"kind": "conv1x1", "cin": c, "cout": o, "k": 1, "stride": 1, "hw": hw}
      for c, o, hw in [(24, 96, 56), (96, 24, 56), (36, 144, 28), (144, 36, 28), (72, 288, 14), (288, 72, 14),
                       (144, 576, 7), (576, 144, 7), (320, 1600, 7), (16, 16, 7), (32, 64, 14), (18, 36, 28)]),
    *({"kind": "conv", "cin": c, "cout": o, "k": k, "stride": s, "hw": hw}
      for c, o, k, s, hw in [(3, 24, 3, 2, 224), (24, 24, 3, 2, 112), (64, 64, 3, 1, 28), (128, 128, 3, 1, 14),
                             (16, 16, 3, 1, 7)]),
    *({"kind": "dw", "cin": c, "cout": c, "k": k, "stride": s, "hw": hw}
      for c, k, s, hw in [(96, 3, 1, 56), (144, 5, 1, 28), (288, 7, 1, 14), (576, 3, 1, 7), (144, 3, 2, 56),
                          (16, 3, 1, 7), (32, 5, 1, 14), (24, 7, 1, 28)]),
    *({"kind": "linear", "cin": c, "cout": o, "k": 1, "stride": 1, "hw": 1} for c, o in [(320, 10), (1600, 1000)]),
]
# Quick: the first two shapes of each kind.
QUICK_SHAPES = [s for kind in ("conv1x1", "conv", "dw", "linear")
                for s in [d for d in DEFAULT_SHAPES if d["kind"] == kind][:2]]
SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
QUICK_SPARSITIES = (0.7, 0.9, 0.95)


def _layer_graph(spec: dict[str, Any], sparsity: float, seed: int) -> tuple[Graph, tuple[int, ...]]:
    g = torch.Generator().manual_seed(seed)
    kind, cin, cout, k = spec["kind"], spec["cin"], spec["cout"], spec["k"]
    if kind == "linear":
        w = torch.randn(cout, cin, generator=g)
        attrs: dict[str, Any] = {"act": "none"}
        op, shape = "linear", (1, cin)
    else:
        groups = cin if kind == "dw" else 1
        w = torch.randn(cout, cin // groups, k, k, generator=g)
        attrs = {"stride": spec["stride"], "padding": k // 2, "groups": groups, "act": "relu"}
        op, shape = "conv2d", (1, cin, spec["hw"], spec["hw"])
    mask = (torch.rand(w.shape, generator=g) >= sparsity).float()
    node = Node("layer", op, ["x"], attrs, {"weight": w * mask, "bias": torch.randn(cout, generator=g), "mask": mask})
    return Graph([node], ["x"], ["layer"]), shape


def _overhead_model(tmp: Path) -> Path:
    """An Identity model: the per-run cost of session.run itself, subtracted from every point."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, tmp / "identity.onnx")
    return tmp / "identity.onnx"


def _one_layer_model(graph: Graph, shapes: dict, fmt: str) -> onnx.ModelProto:
    from ..export.onnx.dense import dense_model
    from ..export.onnx.sparse_ops import sparse_model
    from ..graph.kinds import planned
    if fmt == "dense":
        return dense_model(graph, shapes)
    return sparse_model(planned(graph, {"layer": fmt}), shapes)


def variants(kind: str, sparsities: tuple[float, ...], backend: str = "onnx") -> list[tuple[str, float]]:
    """(format, sparsity) of every point measured for a layer kind: dense once, then every sparse
    format `backend` runs for it (graph.kinds.sparse_formats) at every sparsity."""
    from ..graph.kinds import sparse_formats
    return [("dense", 0.0)] + [(f, s) for s in sparsities for f in sparse_formats(kind, backend)]


def layer_point(spec: dict[str, Any], fmt: str, sp: float) -> tuple[Graph, dict[str, tuple[int, ...]], dict[str, Any]]:
    """The one-layer graph of a tune shape at sparsity `sp`, its shapes, and its point (every key but us)."""
    from ..graph.shapes import infer_shapes
    graph, shape = _layer_graph(spec, sp, seed=int(sp * 1000))
    shapes = infer_shapes(graph, shape)
    node = graph.nodes[0]
    out_pixels = shapes["layer"][2] * shapes["layer"][3] if is_conv(node) else 1
    dense_macs = float(node.params["weight"].numel() * out_pixels)
    point = {"kind": spec["kind"], "format": fmt, "dense_macs": dense_macs, "sparsity": round(sp, 4),
             "work": work(node, fmt, out_pixels),
             "shape": [spec["cin"], spec["cout"], spec["k"], spec["stride"], spec["hw"]]}
    return graph, shapes, point


def measure_spec(spec: dict[str, Any], sparsities: tuple[float, ...], tmp: Path, repeats: int) -> list[dict[str, Any]]:
    """Dense and every sparse format at every sparsity for one layer shape.

    All variants are timed interleaved (one run each in turn), so load from other processes
    lands on all of them alike instead of skewing whichever ran during it.
    """
    from ..runtime.ort import ort_session
    sessions, points = [], []
    shape: tuple[int, ...] = ()
    for i, (fmt, sp) in enumerate(variants(spec["kind"], sparsities)):
        graph, shapes, point = layer_point(spec, fmt, sp)
        shape = shapes["x"]
        path = tmp / f"v{i}.onnx"
        onnx.save(_one_layer_model(graph, shapes, fmt), path)
        sessions.append(ort_session(path, threads=1, optimization="extended"))
        points.append(point)
    sessions.append(ort_session(_overhead_model(tmp), threads=1))
    feeds = [{"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}] * len(points)
    feeds.append({"x": np.zeros((1, 8), np.float32)})
    times = np.zeros((repeats, len(sessions)))
    for r in range(-3, repeats):  # three warm-up rounds
        for j, (sess, feed) in enumerate(zip(sessions, feeds)):
            t0 = time.perf_counter()
            sess.run(None, feed)
            if r >= 0:
                times[r, j] = time.perf_counter() - t0
    med = np.median(times, axis=0) * 1e6
    for p, us in zip(points, med[:-1]):
        p["us"] = round(max(float(us - med[-1]), 0.5), 3)
    return points


def dump_table(table: dict[str, Any]) -> str:
    """JSON with one point per line: small enough to ship, easy to diff between machines."""
    head = {k: v for k, v in table.items() if k != "points"}
    rows = ",\n".join(" " + json.dumps(p, separators=(",", ":")) for p in table["points"])
    return json.dumps(head)[:-1] + ', "points": [\n' + rows + "\n]}\n"


def check_spec(spec: Any) -> None:
    ok = isinstance(spec, dict) and spec.get("kind") in ("conv1x1", "conv", "dw", "linear") and all(
        isinstance(spec.get(k), int) and spec[k] >= 1 for k in ("cin", "cout", "k", "stride", "hw"))
    if not ok or (spec["kind"] == "dw" and spec["cin"] != spec["cout"]):
        raise DeployError(f"tune shape {str(spec)[:80]}: expected {{kind: conv1x1|conv|dw|linear, cin, cout, k, "
                          f"stride, hw}} with positive ints (dw: cin == cout)")


def settings(shapes: Iterable[dict[str, Any]] | None,
             quick: bool) -> tuple[list[dict[str, Any]], tuple[float, ...], int]:
    """(shapes, sparsities, repeats) of a tune run: quick measures fewer of each."""
    specs = list(shapes) if shapes is not None else (QUICK_SHAPES if quick else DEFAULT_SHAPES)
    for spec in specs:
        check_spec(spec)
    return specs, (QUICK_SPARSITIES if quick else SPARSITIES), (15 if quick else 40)


def run_tune(target: str, shapes: Iterable[dict[str, Any]] | None, quick: bool, out: str | Path | None) -> Path:
    if target != "llvm":
        raise DeployError(f"tune --target {target!r}: only 'llvm' (this machine's CPU) can be measured here; "
                          f"a board's table with --rpc HOST:PORT or --tracker HOST:PORT --key KEY")
    from ..runtime.ort import ort_library_path
    if not ort_library_path().is_file():
        raise DeployError(f"tune needs the st.sparse ONNX Runtime library ({ort_library_path()}); build the package")
    specs, sparsities, repeats = settings(shapes, quick)
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="st-tune-") as d:
        for spec in specs:
            points += measure_spec(spec, sparsities, Path(d), repeats)
    table = {"version": TABLE_VERSION, "target": target, "machine": machine_id(), "threads": 1, "backend": "onnx",
             "points": points}
    return write_table(table, Path(out) if out is not None else cached_table_path(target))


def write_table(table: dict[str, Any], path: Path) -> Path:
    """Write `table` to `path` atomically (a killed tune leaves the previous table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_suffix(".tmp")
    tmp_path.write_text(dump_table(table))
    tmp_path.replace(path)
    return path
