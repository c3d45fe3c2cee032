"""Peak resident memory per benchmark configuration, each measured in a fresh child process.

The latency rounds run every configuration in one process, where resident memory is shared by
all of them and says nothing about any one runtime. So memory is measured apart: for each
(runtime, threads, batch) a short-lived child process (python -m st_deploy.bench._rss_child)
loads the model on that runtime, runs the cold call, `warmup` calls and `iters` more on the
same seeded input, and reports its own peak resident set size (getrusage ru_maxrss), which
covers loading transients too. That is the whole process: the Python interpreter, st-deploy
(which imports torch) and the runtime library are in it. A baseline child per runtime library
(torch, onnxruntime, tvm) imports exactly what the measuring child imports and loads no model;
peak minus baseline is what loading and running the model added.

The children run one after another, after the latency rounds, so they never compete with timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from .runtimes import BenchSource, cache_root

# Library each runtime brings into the process, imported alone by its baseline child.
RUNTIME_LIBRARY = {"torch": "torch", "torch-compact": "torch", "ort-plain": "onnxruntime", "ort-dense": "onnxruntime",
                   "ort-sparse": "onnxruntime", "openvino": "openvino", "openvino-bf16": "openvino",
                   "tvm-dense": "tvm", "tvm-sparse": "tvm"}
CHILD = "st_deploy.bench._rss_child"
CHILD_TIMEOUT_S = 600.0


def _run_child(spec: dict[str, Any], timeout: float = CHILD_TIMEOUT_S) -> dict[str, Any]:
    """Run one child; its last stdout line is a JSON object ({"error": ...} when it failed)."""
    # The child imports the same st_deploy as this process (a checkout, not an older installed copy).
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    try:
        r = subprocess.run([sys.executable, "-m", CHILD, json.dumps(spec)], capture_output=True, text=True,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"memory child timed out after {timeout:.0f} s"}
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"memory child exited {r.returncode}: {tail[:200]}"}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": "memory child printed no JSON result"}


def baseline_rss(library: str) -> dict[str, Any]:
    """Peak RSS (MiB) of a child that imports st-deploy's bench harness and `library`, nothing else."""
    return _run_child({"mode": "baseline", "library": library})


def _torch_ticket_file(src: BenchSource, runtime: str) -> Path:
    """A packed ticket (ticket.pt; compact.pt form for torch-compact) the child can load with
    weights_only=True, cached by ticket sha256."""
    from ..loaders.packed import save_ticket
    ticket = src.compacted() if runtime == "torch-compact" else src.require_ticket(runtime)
    path = cache_root() / "rss" / f"{src.key()}-{runtime}.pt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_ticket(ticket, path, force=True)
    return path


def config_spec(src: BenchSource, runtime: str, threads: int, batch: int, shape: Sequence[int],
                warmup: int, iters: int) -> dict[str, Any]:
    """What a child needs to rebuild one configuration: an artifact folder or a packed ticket."""
    spec: dict[str, Any] = {"mode": "run", "runtime": runtime, "threads": threads,
                            "shape": [batch, *shape[1:]], "warmup": warmup, "iters": iters,
                            "target": src.target}
    if runtime in ("torch", "torch-compact"):
        spec["ticket"] = str(_torch_ticket_file(src, runtime))
        ticket = src.require_ticket(runtime)
        if ticket.family == "masked" and runtime == "torch":
            spec["model"] = ticket.config.get("model")  # the factory the user named to load it
    elif runtime == "ort-plain":
        spec["plain_model"] = str(src.plain_onnx())
    elif runtime in ("ort-dense", "ort-sparse", "openvino", "openvino-bf16"):
        spec["artifact"] = str(src.exported("onnx"))
    else:
        spec["artifact"] = str(src.exported(src.target, "auto" if runtime == "tvm-sparse" else "dense", batch=batch))
    return spec


def measure_peak_rss(src: BenchSource, configs: Sequence[tuple[str, int, int]], shape: Sequence[int],
                     warmup: int = 3, iters: int = 5) -> dict[tuple[str, int, int], dict[str, Any]]:
    """{(runtime, threads, batch): {peak_rss_mb, baseline_rss_mb, steady_rss_mb} or {error}}."""
    baselines: dict[str, dict[str, Any]] = {}
    out = {}
    for runtime, threads, batch in configs:
        lib = RUNTIME_LIBRARY[runtime]
        if lib not in baselines:
            baselines[lib] = baseline_rss(lib)
        try:
            spec = config_spec(src, runtime, threads, batch, shape, warmup, iters)
        except Exception as e:  # e.g. a ticket that cannot be packed: report, do not fail the benchmark
            out[(runtime, threads, batch)] = {"error": f"cannot hand the model to a child: {e}"}
            continue
        got = _run_child(spec)
        got["baseline_rss_mb"] = baselines[lib].get("peak_rss_mb")
        out[(runtime, threads, batch)] = got
    return out
