"""Time per layer on the ONNX runtimes, from ONNX Runtime's own profiler, so users see which
kernel and format ran for each layer and where the time goes."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import DeployError


def _node_formats(model_path: Path) -> dict[str, tuple[str, str]]:
    """node name -> (op type, format): st.sparse::SparseConv nodes carry their format attribute."""
    model = onnx.load(str(model_path), load_external_data=False)
    out = {}
    for n in model.graph.node:
        fmt = "dense"
        for a in n.attribute:
            if a.name == "format":
                fmt = onnx.helper.get_attribute_value(a)
                fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
        out[n.name] = (n.op_type, fmt if n.domain == "st.sparse" else "dense")
    return out


def ort_per_layer(model_path: Path, x: np.ndarray, threads: int = 1, runs: int = 20,
                  warmup: int = 3) -> dict[str, Any]:
    """Mean time per node over `runs` profiled runs: [{node, op, format, mean_us, share}], total."""
    from ..ort import ort_session
    model_path = Path(model_path)
    if runs < 1:
        raise DeployError("--per-layer needs at least one run")
    formats = _node_formats(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(model_path, threads=threads, profile=Path(tmp) / "profile")
        name = session.get_inputs()[0].name
        for _ in range(warmup + runs):
            session.run(None, {name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    times: dict[str, list[float]] = defaultdict(list)
    ops: dict[str, str] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        node = e["name"][: -len("_kernel_time")]
        times[node].append(float(e["dur"]))
        ops[node] = e.get("args", {}).get("op_name", "?")
    rows = []
    for node, durs in times.items():
        timed = durs[-runs:] if len(durs) >= runs else durs  # drop the warm-up runs
        op, fmt = formats.get(node, (ops[node], "dense"))
        rows.append({"node": node, "op": ops[node] or op, "format": fmt, "mean_us": float(np.mean(timed))})
    total = sum(r["mean_us"] for r in rows)
    for r in rows:
        r["share"] = r["mean_us"] / total if total else 0.0
    rows.sort(key=lambda r: -r["mean_us"])
    by_format: dict[str, float] = defaultdict(float)
    for r in rows:
        by_format[f"{r['op']}:{r['format']}"] += r["mean_us"]
    return {"model": model_path.name, "threads": threads, "runs": runs, "total_us": total,
            "by_op_format_us": dict(by_format), "nodes": rows}
