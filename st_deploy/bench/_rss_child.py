"""Child process of st_deploy.bench.memory: `python -m st_deploy.bench._rss_child SPEC_JSON`.

mode "run": load one configuration (an artifact folder, a plain ONNX file or a packed ticket), run the cold call,
`warmup` and `iters` more calls, print {"peak_rss_mb", "steady_rss_mb"} as one JSON line.
mode "baseline": import the same harness and the runtime library only, print the same.
Not imported by the package, so `-m` runs it fresh.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    Linux: VmHWM of /proc/self/status, the high-water mark of this process image's own memory.
    Not ru_maxrss there: Linux carries the parent's resident size at fork over exec into the
    child's ru_maxrss, so a child of a large benchmark process would report the parent's size.
    Elsewhere ru_maxrss (bytes on macOS, KiB on other systems).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _import_library(name: str) -> None:
    if name == "tvm":
        import tvm  # noqa: F401
        from tvm import relax  # noqa: F401
    elif name == "onnxruntime":
        import onnxruntime  # noqa: F401
    elif name == "torch":
        import torch  # noqa: F401
    elif name == "openvino":
        import openvino  # noqa: F401
    else:
        raise ValueError(f"unknown runtime library {name!r}")


def main(spec: dict[str, Any]) -> dict[str, Any]:
    from st_deploy.graph.fidelity import seeded_input
    from st_deploy.bench.memory import RUNTIME_LIBRARY
    from st_deploy.bench.runtimes import BenchSource, prepare

    if spec["mode"] == "baseline":
        _import_library(spec["library"])
        return {"peak_rss_mb": peak_rss_mb(), "steady_rss_mb": current_rss_mb()}
    runtime = spec["runtime"]
    _import_library(RUNTIME_LIBRARY[runtime])
    if "ticket" in spec:
        from st_deploy.loaders.checks import read_tensors_only
        from st_deploy.loaders.packed import load_packed
        path = Path(spec["ticket"])
        ticket = load_packed(read_tensors_only(path), path, model=spec.get("model"))
        src = BenchSource(ticket=ticket)
        runtime = "torch"  # torch-compact's ticket file already holds the compacted module
    elif "plain_model" in spec:
        src = BenchSource(ticket=None, plain_model=Path(spec["plain_model"]))
    else:
        src = BenchSource(ticket=None, artifact=Path(spec["artifact"]), target=spec.get("target", "llvm"))
    run = prepare(runtime, src, int(spec["threads"]), shape=spec["shape"])
    x = seeded_input(spec["shape"])
    for _ in range(1 + int(spec["warmup"]) + int(spec["iters"])):
        run(x)
    return {"peak_rss_mb": peak_rss_mb(), "steady_rss_mb": current_rss_mb()}


if __name__ == "__main__":
    try:
        result = main(json.loads(sys.argv[1]))
    except Exception as e:  # the parent records the message instead of a figure
        result = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"}
    print(json.dumps(result), flush=True)
