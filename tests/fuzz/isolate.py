"""Crash isolation for fuzz cases: one long-lived worker process, restarted when a case kills it.

A case is sent to the worker over a pipe; the parent waits at most `seconds`. A worker that dies
(segfault, abort, OOM kill) is a "crash", one that does not answer in time is a "hang"; either way
it is replaced and the next case runs in a fresh process. The worker is started with "spawn", not
fork: forking a parent that already runs ORT/torch threads can deadlock the child.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import tempfile
import traceback
from typing import Any, Callable

OUTCOMES = ("clear error", "correct", "crash", "hang", "wrong", "unclear error")
BAD = ("crash", "hang", "wrong", "unclear error")


class Worker:
    """Runs `target(task)` (a picklable module-level function) in a reusable child process."""

    def __init__(self, target: Callable[[Any], Any]) -> None:
        self.target = target
        self.ctx = mp.get_context("spawn")
        self.proc: mp.process.BaseProcess | None = None
        self.conn = None
        self.restarts = 0

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_loop, args=(child, self.target), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def _stop(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()  # our own child, by its pid
            self.proc.join(5)
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None

    def run(self, task: Any, seconds: float) -> tuple[str, Any]:
        """("done", result) | ("crash", exit code) | ("hang", None) | ("raised", traceback)."""
        if self.proc is None or not self.proc.is_alive():
            self._start()
        try:
            self.conn.send(task)
            if self.conn.poll(seconds):
                kind, payload = self.conn.recv()
                return kind, payload
        except (EOFError, BrokenPipeError, ConnectionResetError):
            pass
        if self.proc.is_alive():
            self._stop()
            self.restarts += 1
            return "hang", None
        code = self.proc.exitcode
        self._stop()
        self.restarts += 1
        return "crash", code

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
                self.proc.join(5)
            except (BrokenPipeError, OSError):
                pass
        self._stop()


def _loop(conn, target) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        try:
            conn.send(("done", target(task)))
        except BaseException:  # a bug in the harness itself, reported as such
            conn.send(("raised", traceback.format_exc()[-2000:]))


class OutcomeTally:
    """Per category: tried / clear error / correct / crash / hang / wrong / unclear error."""

    def __init__(self) -> None:
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.failures: list[str] = []
        self.notes: list[str] = []

    def add(self, category: str, outcome: str, detail: str = "") -> None:
        assert outcome in OUTCOMES, outcome
        self.counts[category][outcome] += 1
        if outcome in BAD:
            self.failures.append(f"{category}: {outcome}: {detail}")

    def table(self) -> str:
        head = f"{'category':<22}{'tried':>7}" + "".join(f"{o:>15}" for o in OUTCOMES)
        rows = [head]
        total: collections.Counter = collections.Counter()
        for c, n in sorted(self.counts.items()):
            total.update(n)
            rows.append(f"{c:<22}{sum(n.values()):>7}" + "".join(f"{n[o]:>15}" for o in OUTCOMES))
        rows.append(f"{'total':<22}{sum(total.values()):>7}" + "".join(f"{total[o]:>15}" for o in OUTCOMES))
        return "\n".join(rows)


def scratch_file(data: bytes, suffix: str) -> str:
    fd, path = tempfile.mkstemp(suffix=suffix, prefix="st-fuzz-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path
