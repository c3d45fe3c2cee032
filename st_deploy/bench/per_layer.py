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

from ..artifact import TVM_LIBRARY
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
    from ..runtime.ort import ort_session
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


# The kernel symbols a TVM artifact calls through R.call_dps_packed (export/tvm/ops). The
# manifest's per-layer "impl" starts with the symbol the layer calls ("relax conv2d" etc. for
# layers left to Relax ops); symbols read there count as kernels too (e.g. prefixed GPU ones).
TVM_KERNEL_SYMBOLS = ("conv2d_csr", "conv2d_bsr", "dwconv2d", "dwconv2d_csr", "linear_csr", "linear_dense")
TVM_METHOD = ("per-call timer on the Relax VM's call instructions (VirtualMachine.set_instrument; "
              "TVM 0.27 has no Relax VM profiler): each call's time includes ~1-3 us of callback overhead")


def _tvm_kernel_layers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Manifest layers that run on one of our kernels, in the order they are called: their "call"
    index (convs absorbed into an n-ary add are called at the add), else graph order (manifests
    written before the index existed)."""
    out = []
    for i, lp in enumerate(manifest.get("plan", {}).get("layers", [])):
        symbol = str(lp.get("impl", "")).split(" ")[0]
        if symbol and symbol != "relax":
            out.append({**lp, "symbol": symbol, "_order": lp.get("call", i)})
    out.sort(key=lambda lp: lp["_order"])
    return out


def _tvm_calls(runner: Any, x: np.ndarray, runs: int, warmup: int) -> tuple[list[list[tuple[str, float]]], list[float]]:
    """([(symbol, seconds) per VM call instruction] for each of the `runs` timed runs, their wall times)."""
    import time
    runs_calls: list[list[tuple[str, float]]] = []
    walls: list[float] = []
    current: list[tuple[str, float]] = []
    started: list[float] = []

    def instrument(func: Any, symbol: str, before: bool, ret: Any, *args: Any) -> int:
        if before:
            started.append(time.perf_counter())
        else:
            current.append((str(symbol), time.perf_counter() - started.pop()))
        return 0

    runner.vm.set_instrument(instrument)
    try:
        for i in range(warmup + runs):
            current = []
            t0 = time.perf_counter()
            runner.run(x)
            if i >= warmup:
                walls.append(time.perf_counter() - t0)
                runs_calls.append(current)
    finally:
        runner.vm.set_instrument(None)
    return runs_calls, walls


def tvm_per_layer(folder: Path, x: np.ndarray, threads: int = 1, runs: int = 20, warmup: int = 3) -> dict[str, Any]:
    """Median time per call of a TVM artifact over `runs` runs, kernel calls mapped to graph nodes.

    The manifest gives each layer that runs on a kernel the index of its call in a run ("call"),
    so the k-th kernel call is the layer with call index k; the mapping is used only if the
    called symbols match the manifest's layer by layer ("attributed": True), else rows are named
    by call order and "note" says why.
    Relax ops (TIR functions TVM names, e.g. add4, mean) are listed per call under their TVM name;
    VM bookkeeping (vm.builtin.*: allocation, null values, shape checks) is one row.
    Same shape as ort_per_layer's result ("mean_us" holds the median here, "stat" says so), plus
    "attributed", "note", "method" and "run_us" (whole runs with and without the instrument, so
    the instrument's overhead is visible).
    """
    from ..runtime.runner import load
    folder = Path(folder)
    if runs < 1:
        raise DeployError("--per-layer needs at least one run")
    runner = load(folder, threads=threads)
    if not hasattr(runner, "vm"):
        raise DeployError(f"{folder}: not a TVM artifact")
    if str(runner.device).startswith("cuda"):
        raise DeployError(f"{folder}: per-layer timing of GPU artifacts is not supported (calls are asynchronous)")
    import time
    plain = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        runner.run(x)
        if i >= warmup:
            plain.append(time.perf_counter() - t0)
    runs_calls, walls = _tvm_calls(runner, x, runs, 0)
    sequence = [s for s, _ in runs_calls[0]]
    if any([s for s, _ in calls] != sequence for calls in runs_calls):
        raise DeployError(f"{folder}: the VM made different calls from run to run; cannot average per call")
    layers = _tvm_kernel_layers(runner.manifest)
    symbols = set(TVM_KERNEL_SYMBOLS) | {lp["symbol"] for lp in layers}
    kernel_calls = [s for s in sequence if s in symbols]
    expected = [lp["symbol"] for lp in layers]
    attributed = kernel_calls == expected
    note = ("kernel calls mapped to graph nodes in call order; the called symbols match the manifest's layers"
            if attributed else
            f"kernel calls NOT attributed to graph nodes: the VM called {len(kernel_calls)} kernels "
            f"({', '.join(kernel_calls[:3])}...) but the manifest lists {len(expected)} kernel layers "
            f"({', '.join(expected[:3])}...) in another order; rows are named by call order")
    # Median over runs per call: one preempted run on a shared machine moves a mean by milliseconds.
    per_call = np.median(np.array([[t for _, t in calls] for calls in runs_calls]), axis=0) * 1e6
    rows: list[dict[str, Any]] = []
    builtin_us, builtin_calls = 0.0, 0
    seen: dict[str, int] = defaultdict(int)
    k = 0
    for symbol, us in zip(sequence, per_call):
        if symbol.startswith("vm.builtin."):
            builtin_us += float(us)
            builtin_calls += 1
            continue
        seen[symbol] += 1
        if symbol in symbols:
            if attributed:
                lp = layers[k]
                row = {"node": lp["name"], "op": symbol, "format": lp.get("runs_as", lp.get("format", "dense")),
                       "impl": lp.get("impl", symbol)}
                if "fused" in lp:
                    row["fused"] = lp["fused"]
            else:
                row = {"node": f"{symbol} call {seen[symbol]}", "op": symbol, "format": "?"}
            k += 1
        else:
            row = {"node": symbol if seen[symbol] == 1 else f"{symbol} call {seen[symbol]}", "op": "relax op",
                   "format": "dense"}
        rows.append({**row, "mean_us": float(us)})
    if builtin_calls:
        rows.append({"node": f"VM builtins ({builtin_calls} calls)", "op": "vm.builtin", "format": "-",
                     "mean_us": builtin_us})
    total = sum(r["mean_us"] for r in rows)
    for r in rows:
        r["share"] = r["mean_us"] / total if total else 0.0
    rows.sort(key=lambda r: -r["mean_us"])
    by_format: dict[str, float] = defaultdict(float)
    for r in rows:
        by_format[f"{r['op']}:{r['format']}"] += r["mean_us"]
    return {"model": TVM_LIBRARY, "threads": threads, "runs": runs,
            "total_us": total, "by_op_format_us": dict(by_format), "nodes": rows, "attributed": attributed,
            "note": note, "method": TVM_METHOD, "stat": "median",
            "run_us": {"uninstrumented_median": float(np.median(plain) * 1e6),
                       "instrumented_median": float(np.median(walls) * 1e6)},
            "calls_per_run": len(sequence)}


# Layer-time buckets (microseconds at the first thread count) of scaling_by_layer_size.
LAYER_BUCKETS_US = (10.0, 20.0, 40.0, 80.0, 160.0, float("inf"))


def scaling_by_layer_size(one: dict[str, Any], many: dict[str, Any]) -> list[dict[str, Any]]:
    """Two profiles of the same model at different thread counts, summed per bucket of layer time
    in `one`: which layers a second thread speeds up (big ones) and which it does not (small ones)."""
    t1 = {n["node"]: n["mean_us"] for n in one["nodes"]}
    tn = {n["node"]: n["mean_us"] for n in many["nodes"]}
    rows, lo = [], 0.0
    for hi in LAYER_BUCKETS_US:
        names = [k for k, v in t1.items() if lo <= v < hi and k in tn]
        a, b = sum(t1[k] for k in names), sum(tn[k] for k in names)
        rows.append({"layer_us": f"{lo:g}-{hi:g}", "layers": len(names), "first_us": round(a, 1),
                     "then_us": round(b, 1), "scaling": round(a / b, 2) if b else None})
        lo = hi
    return rows

