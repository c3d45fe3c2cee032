"""Predicted layer times from a cost table of kernel measurements.

A cost table is JSON: {"version": 1, "target": "llvm", "machine": ..., "points": [...]}, each
point one measured layer: kind (conv1x1 | conv | dw | linear), format (dense | csr | bsr4x1),
dense_macs (multiply-adds of the dense layer at batch 1), sparsity, work (multiply-adds the
format performs: dense_macs for dense, live weights x output pixels for csr, stored block
values x output pixels for bsr4x1) and us (median microseconds).

Prediction interpolates the throughput (work per microsecond) of the nearest measured points of
the same kind and format in (log2 dense_macs, sparsity), inverse-distance weighted, and divides
the layer's work by it. Throughput rather than time is interpolated because it varies slowly with
size, while time spans four decades across a network.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..cache import cache_dir
from ..errors import DeployError
from ..graph.ir import Node
from ..graph.sparse import bsr4x1, live

TABLE_VERSION = 1
KINDS = ("conv1x1", "conv", "dw", "linear")
_NEIGHBOURS = 3
_SPARSITY_WEIGHT = 8.0  # one octave of size counts like 0.125 of sparsity


def work(n: Node, fmt: str, out_pixels: int) -> float:
    """The multiply-adds layer `n` does in `fmt` at batch 1 (a point's `work`; see the docstring)."""
    w, mask = n.params["weight"], n.params.get("mask")
    if fmt == "dense":
        return float(w.numel() * out_pixels)
    if fmt == "bsr4x1":
        return float(bsr4x1(w, mask)[2].numel() * out_pixels)
    return float(int(live(w, mask).sum()) * out_pixels)


def machine_id() -> str:
    """CPU model and core count: a measured table is valid only where it was measured."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} x{cores}"


def cached_table_path(target: str) -> Path:
    safe = "".join(c if c.isalnum() else "_" for c in machine_id())
    return cache_dir() / f"cost-{target}-{safe}.json"


@dataclass(frozen=True)
class CostTable:
    points: list[dict[str, Any]]
    source: str   # where the table came from (a path, or "default")
    target: str

    def predict(self, kind: str, fmt: str, dense_macs: float, sparsity: float, work: float) -> float | None:
        """Predicted microseconds, or None when the table has no point of this kind and format."""
        pts = [p for p in self.points if p["kind"] == kind and p["format"] == fmt]
        if not pts:
            return None
        x = math.log2(max(dense_macs, 1.0))

        def dist(p: dict[str, Any]) -> float:
            d = abs(x - math.log2(max(p["dense_macs"], 1.0)))
            if fmt != "dense":
                d += _SPARSITY_WEIGHT * abs(sparsity - p["sparsity"])
            return d

        near = sorted(pts, key=dist)[:_NEIGHBOURS]
        weights = [1.0 / (dist(p) + 0.05) for p in near]
        rate = sum(w * p["work"] / p["us"] for w, p in zip(weights, near)) / sum(weights)
        return max(work, 1.0) / rate


def _check(d: Any, source: str) -> CostTable:
    if not isinstance(d, dict) or d.get("version") != TABLE_VERSION or not isinstance(d.get("points"), list):
        raise DeployError(f"{source}: not a cost table (version {TABLE_VERSION}); rerun st-deploy tune")
    for p in d["points"]:
        if not isinstance(p, dict) or p.get("kind") not in KINDS or not all(
                isinstance(p.get(k), (int, float)) and p[k] >= 0 for k in ("dense_macs", "sparsity", "work", "us")) \
                or p["us"] <= 0:
            raise DeployError(f"{source}: malformed cost point {str(p)[:80]}; rerun st-deploy tune")
    return CostTable(d["points"], source, d.get("target", "llvm"))


def load_table(path: str | Path) -> CostTable:
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise DeployError(f"{path}: cost table not found") from None
    except (OSError, ValueError) as e:
        raise DeployError(f"{path}: unreadable cost table ({e})") from None
    return _check(d, str(path))


def default_table(target: str) -> CostTable:
    """The measured table for this machine if `st-deploy tune` made one, else the shipped one."""
    cached = cached_table_path(target)
    if cached.exists():
        return load_table(cached)
    if target != "llvm":
        raise DeployError(f"no cost table for target {target!r}: run `st-deploy tune --target {target}` "
                          f"on that machine, or pass format='dense'/'sparse'")
    text = resources.files("st_deploy.plan").joinpath("default_cost.json").read_text()
    return _check(json.loads(text), "default")
