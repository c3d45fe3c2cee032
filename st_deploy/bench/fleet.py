"""Remote benchmarks on one board or a fleet of them under one tracker key.

A fleet run asks the tracker for N boards at once, splits the repeats between them and times
them side by side, one record per board (and thread count): each record carries the facts its
board reported, so boards that differ stay apart. The result's `machine` block describes the
boards, not the host that drove them (the host is under machine.host).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DeployError
from .rpc import _host_port, connect, remote_bench


def free_boards(tracker: str, key: str) -> int:
    """Boards registered under `key` that no session holds now."""
    from tvm import rpc as tvm_rpc
    host, port = _host_port(tracker, "--tracker")
    try:
        summary = tvm_rpc.connect_tracker(host, port).summary()
    except Exception as e:  # TVM's own connection errors
        raise DeployError(f"RPC tracker {tracker} unreachable ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
                          ) from None
    return int(summary.get("queue_info", {}).get(key, {}).get("free", 0))


def split_repeats(repeat: int, boards: int) -> list[int]:
    if boards < 1:
        raise DeployError(f"--boards {boards}: expected a positive number of boards")
    if repeat < boards:
        raise DeployError(f"--repeat {repeat} cannot be spread over {boards} boards (at least one repeat each)")
    return [repeat // boards + (1 if i < repeat % boards else 0) for i in range(boards)]


def sessions(rpc: str | None, tracker: str | None, key: str | None, boards: int,
             wait_free_s: float = 30.0) -> list[Any]:
    if boards == 1:
        return [connect(rpc, tracker, key)]
    if rpc or not tracker or not key:
        raise DeployError("--boards N needs --tracker HOST:PORT --key KEY (a fleet registers under one key)")
    # A board re-registers as free a moment after its last session ends; a request beyond the
    # free boards would wait for one to come free, possibly forever.
    deadline = time.monotonic() + wait_free_s
    while (free := free_boards(tracker, key)) < boards and time.monotonic() < deadline:
        time.sleep(1.0)
    if free < boards:
        raise DeployError(f"--boards {boards}: the tracker {tracker} has {free} free board(s) under key {key!r} "
                          f"(waited {wait_free_s:.0f} s)")
    return [connect(rpc, tracker, key) for _ in range(boards)]


def remote_result(folder: Path, rpc: str | None, tracker: str | None, key: str | None, *, boards: int = 1,
                  repeat: int = 50, threads: Sequence[int] | None = None, input_shape: Sequence[int] | None = None,
                  reference: list[np.ndarray] | None = None, tolerance: float | None = None) -> dict[str, Any]:
    """Time the TVM artifact `folder` on `boards` boards; a bench result dict (records per board)."""
    from .core import artifact_input_shape
    from .machine import machine_info
    shares = split_repeats(repeat, boards)
    held = sessions(rpc, tracker, key, boards)

    def run(i: int) -> list[dict[str, Any]]:
        out = []
        for t in (threads or [None]):
            rec = remote_bench(folder, held[i], input_shape, repeat=shares[i], reference=reference,
                               threads=t, tolerance=tolerance)
            out.append({**rec, "board_index": i, "cold_ms": None, "peak_rss_mb": None, "baseline_rss_mb": None,
                        "speedup": None, "baseline": None})
        return out

    with ThreadPoolExecutor(max_workers=boards) as pool:
        records = [r for per_board in pool.map(run, range(boards)) for r in per_board]
    return {"records": records, "machine": boards_machine(records, machine_info()),
            "remote": rpc or f"{tracker} key={key}", "boards": boards, "repeats_per_board": shares,
            "input_shape": list(input_shape or artifact_input_shape(folder)), "baseline": "-"}


def boards_machine(records: list[dict[str, Any]], host: dict[str, Any]) -> dict[str, Any]:
    """The machine block of a remote result: the boards (their own facts), with the host beside."""
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        d = r.get("device") or {}
        seen.setdefault(str(d.get("server") or r["board_index"]), d)
    facts = list(seen.values())
    first = facts[0]

    def label(d: dict[str, Any]) -> str:
        if d.get("emulated") is None and "cpu" not in d:
            return "board (facts not reported)"
        what = d.get("board_model") or d.get("cpu") or "unknown CPU"
        return f"{what}, {d.get('machine')}" + (" EMULATED (qemu-user on the host's CPU)" if d.get("emulated") else "")
    labels = sorted({label(d) for d in facts})
    return {"cpu": "; ".join(labels), "cores": first.get("cores"), "isa": [first.get("machine") or "?"],
            "machine": first.get("machine"), "os": first.get("os"), "tvm": first.get("tvm"),
            "emulated": [d.get("emulated") for d in facts], "boards": facts, "host": host}
