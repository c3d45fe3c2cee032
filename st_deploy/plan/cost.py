"""Predicted layer times from a cost table of kernel measurements.

A cost table is JSON: {"version": 1, "target": "llvm", "machine": ..., "backend": ..., "points": [...]}, each
point one measured layer: kind (conv1x1 | conv | dw | linear), format (dense | csr | bsr4x1),
dense_macs (multiply-adds of the dense layer at batch 1), sparsity, work (multiply-adds the
format performs: dense_macs for dense, live weights x output pixels for csr, stored block
values x output pixels for bsr4x1) and us (median microseconds).

Prediction interpolates the throughput (work per microsecond) of the nearest measured points of
the same kind and format in (log2 dense_macs, sparsity), inverse-distance weighted, and divides
the layer's work by it. Throughput rather than time is interpolated because it varies slowly with
size, while time spans four decades across a network.

Which table prices a target (default_table): for the TVM backend, a table measured on a board over
TVM RPC for that target (`st-deploy tune --target T --rpc/--tracker`, cached as
cost-T-board-<board>.json); then this machine's own (`st-deploy tune`, ONNX Runtime, cached per
machine); for llvm, the shipped one. `backend` says what timed a table: "onnx" (ONNX Runtime, the
default for tables that do not say) or "tvm" (the Relax VM on the board).
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field, replace
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


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def cached_table_path(target: str) -> Path:
    """This machine's table for `target`, written by `st-deploy tune` (ONNX Runtime)."""
    return cache_dir() / f"cost-{target}-{_safe(machine_id())}.json"


def board_machine(facts: dict[str, Any]) -> str:
    """A board's machine_id, from the facts its server read on the board (board/server.py)."""
    return f"{facts.get('cpu') or facts.get('machine') or 'unknown CPU'} x{facts.get('cores') or '?'}"


def board_table_path(target: str, facts: dict[str, Any]) -> Path:
    """Where `st-deploy tune --rpc/--tracker` caches the table measured on a board for `target`."""
    name = " ".join(filter(None, [facts.get("board_model"), board_machine(facts)]))
    return cache_dir() / f"cost-{target}-board-{_safe(name)}.json"


@dataclass(frozen=True)
class CostTable:
    points: list[dict[str, Any]]
    source: str   # where the table came from (a path, or "default")
    target: str
    machine: str | None = None     # what it was measured on (machine_id / board_machine)
    backend: str = "onnx"          # what timed it: onnx (ONNX Runtime) | tvm (Relax VM on a board)
    board: dict[str, Any] | None = field(default=None, compare=False)  # the board's facts (tvm tables)
    note: str = ""                 # why the planner took this table

    def describe(self) -> str:
        """The table in words: what timed it, on what, for which target, and why it was chosen."""
        runtime = "TVM (time_evaluator over RPC)" if self.backend == "tvm" else "ONNX Runtime"
        where = self.machine or "an unnamed machine"
        if self.board:
            where = f"board {where}" + (f" at {self.board['server']}" if self.board.get("server") else "")
        what = ("the shipped default table, " if self.source == "default" else "") + \
            f"measured with {runtime} on {where} for target {self.target}"
        return what + (f"; {self.note}" if self.note else "")

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
    board = d.get("board") if isinstance(d.get("board"), dict) else None
    return CostTable(d["points"], source, d.get("target", "llvm"), d.get("machine"), d.get("backend", "onnx"), board)


def load_table(path: str | Path) -> CostTable:
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise DeployError(f"{path}: cost table not found") from None
    except (OSError, ValueError) as e:
        raise DeployError(f"{path}: unreadable cost table ({e})") from None
    return _check(d, str(path))


def board_table(target: str) -> CostTable | None:
    """The table measured over TVM RPC on a board for `target`, if `st-deploy tune` cached one.

    llvm is this machine's CPU, so only a table from a board with this machine's CPU and core
    count counts for it. Several boards' tables for one target: the first by file name, and its
    note names the others (pass one to the planner, or `export --cost-table FILE`, to choose).
    """
    found = [t for t in map(load_table, sorted(cache_dir().glob(f"cost-{target}-board-*.json")))
             if target != "llvm" or t.machine == machine_id()]
    if not found:
        return None
    note = f"the board table cached for {target}"
    if len(found) > 1:
        others = ", ".join(Path(t.source).name for t in found[1:])
        note = (f"first by file name of {len(found)} board tables cached for {target} (also {others}); "
                f"pass --cost-table FILE to choose")
    return replace(found[0], note=note)


def default_table(target: str = "llvm", backend: str = "onnx") -> CostTable:
    """The table plan() prices `target` with when given none (see the module docstring): for
    backend "tvm" a board's table for `target`, else this machine's measured one, else (llvm) the
    shipped one."""
    if backend == "tvm":
        board = board_table(target)
        if board is not None:
            return board
    cached = cached_table_path(target)
    if cached.exists():
        return replace(load_table(cached), note="this machine's table from `st-deploy tune`"
                       + ("" if backend == "onnx" else f" (no TVM table measured over RPC for {target})"))
    if target != "llvm":
        raise DeployError(f"no cost table for target {target!r}: run `st-deploy tune --target {target} "
                          f"--rpc HOST:PORT` (or --tracker HOST:PORT --key KEY) against a board, "
                          f"or pass format='dense'/'sparse'")
    text = resources.files("st_deploy.plan").joinpath("default_cost.json").read_text()
    return replace(_check(json.loads(text), "default"),
                   note="no table measured here (`st-deploy tune`)" if backend == "onnx" else
                   "no table measured here (`st-deploy tune`, or `--rpc` against this machine's `st-deploy rpc-server` "
                   "for TVM's times)")


def tvm_table(target: str) -> CostTable:
    """The table a TVM export for `target` plans with: the board table for `target`, else (as
    before board tables existed) this machine's table for llvm, and its note says so."""
    board = board_table(target) if target != "llvm" else None
    if board is not None:
        return board
    host = default_table("llvm", "tvm")
    if target == "llvm":
        return host
    return replace(host, note=f"no board table for {target} (`st-deploy tune --target {target} --rpc/--tracker` "
                              f"measures one), so this machine's table for llvm prices it")
