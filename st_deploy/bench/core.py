"""bench: time runtimes side by side, interleaved, with honest statistics and a fidelity check."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..artifact import read_manifest
from ..errors import DeployError
from ..graph.fidelity import as_arrays, compare, reference_outputs, seeded_input
from ..ticket import Ticket
from .machine import machine_info
from .runtimes import BEST_DENSE, DENSE_RUNTIMES, RUNTIMES, BenchSource, choose_runtimes, prepare
from .stats import speedup, summarize


@dataclass
class Record:
    runtime: str
    threads: int
    batch: int
    stats: dict[str, float]
    cold_ms: float
    fidelity_max_abs: float | None
    fidelity_max_rel: float | None
    peak_rss_mb: float | None = None      # peak RSS of a fresh process running this configuration
    baseline_rss_mb: float | None = None  # the same process with the runtime imported, no model
    speedup: float | None = None
    baseline: str | None = None           # what was asked: "best-dense" or a runtime's name
    baseline_runtime: str | None = None   # the runtime whose p50 at this (threads, batch) divided
    precision: str = "f32"                # what the runtime computes in (openvino reports its own)
    extra: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        d = asdict(self)
        stats = d.pop("stats")
        extra = d.pop("extra")
        return {**d, **stats, **extra}


@dataclass
class _Config:
    runtime: str
    threads: int
    batch: int
    run: Callable[[np.ndarray], Any]
    x: np.ndarray
    cold_ms: float
    fidelity: tuple[float, float] | None
    precision: str = "f32"
    extra: dict[str, Any] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)


def _fidelity(out: Any, ref: list[np.ndarray] | None) -> tuple[float, float] | None:
    """(max_abs, rel) of every output against the ticket's (graph.fidelity)."""
    if ref is None:
        return None
    got = as_arrays(out)
    if [y.shape for y in got] != [r.shape for r in ref]:
        raise DeployError(f"output shapes {[y.shape for y in got]} differ from the ticket's {[r.shape for r in ref]}")
    fid = compare(ref, got)
    return fid["max_abs"], fid["rel"]


def bench(source: Ticket | BenchSource, runtimes: Sequence[str] | str | None = None,
          threads: Sequence[int] = (1,), batches: Sequence[int] = (1,), warmup: int = 10,
          repeat: int = 100, min_time: float = 0.0, baseline: str = BEST_DENSE,
          input_shape: Sequence[int] | None = None, progress: Callable[[int, int], None] | None = None,
          device: str = "cpu", memory: bool = True, memory_iters: int = 5) -> dict[str, Any]:
    """Time each (runtime, threads, batch); returns {"records": [...], "machine": {...}}.

    runtimes: names from RUNTIMES, "all", or None for the default (a ticket: torch, ort-dense,
    ort-sparse; an artifact folder: what it serves); where st-deploy chose them, the result's
    "runtimes_chosen" says which and why (see runtimes.choose_runtimes).

    Within one thread count all configurations run round-robin, so drift of the machine
    (frequency, other load) hits every runtime alike: one call each per turn at one thread,
    3 untimed and 5 timed calls per turn at more (see _schedule). A configuration's
    first call is its cold latency; `warmup` calls follow untimed; then rounds continue until
    each has `repeat` timings and at least `min_time` seconds of them.

    memory: after the latency rounds, measure each configuration's peak resident memory in a
    fresh child process (st_deploy.bench.memory: load, cold call, warm-up, `memory_iters` calls;
    the whole process, Python and the runtime library included) and a baseline child per runtime
    library that loads no model; records get peak_rss_mb and baseline_rss_mb (None, with
    peak_rss_error, where a child failed; None on --device cuda, whose memory is not host RSS).

    baseline: "best-dense" (speedups against the fastest of DENSE_RUNTIMES timed at the same threads
    and batch; each record's baseline_runtime names it) or one runtime of the run.
    """
    src = source if isinstance(source, BenchSource) else BenchSource(ticket=source)
    runtimes, chosen = choose_runtimes(src, runtimes, device)
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise DeployError(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
    if repeat < 1 or warmup < 0:
        raise DeployError("--repeat must be >= 1 and --warmup >= 0")
    if baseline != BEST_DENSE and baseline not in runtimes:
        raise DeployError(f"--baseline {baseline}: not among the runtimes timed ({', '.join(runtimes)}); "
                          f"name one of them or {BEST_DENSE}")
    if any(r.startswith("openvino") for r in runtimes):
        from .openvino_rt import require_openvino
        require_openvino()  # now, not after the other runtimes' exports
    ticket = src.ticket
    shape = list(input_shape or (ticket.default_input_shape if ticket else artifact_input_shape(src.artifact)))
    src.input_shape = tuple(shape)
    saved_threads = torch.get_num_threads()
    records: list[Record] = []
    try:
        for n_threads in threads:
            configs = _prepare_all(src, runtimes, n_threads, batches, shape, ticket, warmup, device)
            total = len(configs) * repeat
            done = 0
            start = time.perf_counter()
            rounds = 0
            settle, block = _schedule(n_threads)
            while True:
                for c in configs[rounds % len(configs):] + configs[: rounds % len(configs)]:
                    for _ in range(settle if len(configs) > 1 else 0):
                        c.run(c.x)
                    for _ in range(block):
                        t0 = time.perf_counter()
                        c.run(c.x)
                        c.times.append(time.perf_counter() - t0)
                        done += 1
                        if progress:
                            progress(min(done, total), total)
                rounds += 1
                enough = all(len(c.times) >= repeat and sum(c.times) >= min_time for c in configs)
                if enough or time.perf_counter() - start > max(600.0, 10 * min_time):
                    break
            for c in configs:
                records.append(Record(c.runtime, c.threads, c.batch, summarize(c.times, c.batch),
                                      c.cold_ms,
                                      c.fidelity[0] if c.fidelity else None,
                                      c.fidelity[1] if c.fidelity else None,
                                      precision=c.precision, extra=dict(c.extra)))
    finally:
        torch.set_num_threads(saved_threads)
    if memory and device == "cpu":
        _add_memory(src, records, shape, min(warmup, 3), memory_iters)
    _add_speedups(records, baseline)
    return {"records": [r.flat() for r in records], "machine": machine_info(),
            "input_shape": shape, "baseline": baseline, "device": device, "runtimes_chosen": chosen,
            "dense_runtimes": list(DENSE_RUNTIMES) if baseline == BEST_DENSE else None,
            "schedule": {str(t): dict(zip(("untimed_per_turn", "timed_per_turn"), _schedule(t))) for t in threads}}


def _schedule(n_threads: int) -> tuple[int, int]:
    """(untimed calls, timed calls) each configuration makes per turn.

    One thread: one call a turn, so drift of the machine hits every runtime alike. More threads:
    ORT's and TVM's idle workers spin for a while after a call, and a configuration that runs right
    after another multi-threaded one finds its cores taken. Measured here (example ticket, two ORT
    dense sessions at 2 threads): alternating call by call 39 ms, alone 17 ms; turns of 3 untimed
    and 5 timed calls 16.3 ms. So with threads > 1 configurations take turns in blocks.
    """
    return (0, 1) if n_threads == 1 else (3, 5)


def _prepare_all(src: BenchSource, runtimes: Sequence[str], n_threads: int, batches: Sequence[int],
                 shape: Sequence[int], ticket: Ticket | None, warmup: int, device: str) -> list[_Config]:
    configs = []
    for batch in batches:
        x = seeded_input([batch, *shape[1:]])
        ref = reference_outputs(ticket.module, x) if ticket is not None else None
        for runtime in runtimes:
            run = prepare(runtime, src, n_threads, device, shape=x.shape)
            t0 = time.perf_counter()
            out = run(x)
            cold = (time.perf_counter() - t0) * 1e3
            fid = _fidelity(out, ref)
            for _ in range(warmup):
                run(x)
            # openvino reports what it computes in and the plugin settings it compiled with
            extra = {"openvino_config": run.config} if hasattr(run, "config") else {}
            configs.append(_Config(runtime, n_threads, batch, run, x, cold, fid,
                                   getattr(run, "precision", "f32"), extra))
    return configs


def _add_memory(src: BenchSource, records: list[Record], shape: Sequence[int], warmup: int, iters: int) -> None:
    from .memory import measure_peak_rss
    got = measure_peak_rss(src, [(r.runtime, r.threads, r.batch) for r in records], shape, warmup, iters)
    for r in records:
        m = got.get((r.runtime, r.threads, r.batch), {})
        r.peak_rss_mb = m.get("peak_rss_mb")
        r.baseline_rss_mb = m.get("baseline_rss_mb")
        if "error" in m:
            r.extra["peak_rss_error"] = m["error"]


def _add_speedups(records: list[Record], baseline: str) -> None:
    """Speedup of each record over the baseline at the same (threads, batch): the runtime named, or
    with "best-dense" the fastest (p50) of DENSE_RUNTIMES there. No baseline record, no speedup."""
    candidates = DENSE_RUNTIMES if baseline == BEST_DENSE else (baseline,)
    for key in {(r.threads, r.batch) for r in records}:
        group = [r for r in records if (r.threads, r.batch) == key]
        pool = [r for r in group if r.runtime in candidates]
        if not pool:
            continue
        base = min(pool, key=lambda r: r.stats["p50_ms"])
        for r in group:
            r.speedup = speedup(base.stats["p50_ms"], r.stats["p50_ms"])
            r.baseline = baseline
            r.baseline_runtime = base.runtime


def baseline_runtimes(result: dict[str, Any]) -> dict[tuple[int, int], str]:
    """{(threads, batch): the runtime the speedups there are against} of a bench result."""
    return {(r["threads"], r["batch"]): r["baseline_runtime"] for r in result["records"]
            if r.get("baseline_runtime")}


def artifact_input_shape(folder: Path) -> list[int]:
    """The input shape an artifact's manifest records (a symbolic batch dimension read as 1)."""
    inputs = read_manifest(folder)["inputs"]
    try:
        return [1 if isinstance(d, str) else int(d) for d in inputs[0]["shape"]]
    except (ValueError, KeyError, IndexError, TypeError):
        raise DeployError(f"{folder}: the manifest's input shape is unreadable; pass --input-shape") from None
