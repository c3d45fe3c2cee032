"""Benchmark results as a console table, JSON, CSV and a PNG plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_path
from ..io.tables import print_table

CSV_COLUMNS = ("runtime", "threads", "batch", "n", "min_ms", "mean_ms", "p50_ms", "p90_ms", "p99_ms",
               "std_ms", "throughput_items_s", "cold_ms", "peak_rss_mb", "baseline_rss_mb", "speedup", "baseline",
               "baseline_runtime", "precision", "fidelity_max_abs", "fidelity_max_rel")


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return str(v)


def _model_mb(r: dict[str, Any]) -> str:
    """Peak RSS minus the runtime's baseline process: what loading and running the model added."""
    peak, base = r.get("peak_rss_mb"), r.get("baseline_rss_mb")
    return "-" if peak is None or base is None else f"{peak - base:+.0f}"


def print_results(result: dict[str, Any]) -> None:
    rows = []
    for r in result["records"]:
        rows.append([r["runtime"], r["threads"], r["batch"], _fmt(r["p50_ms"]), _fmt(r["mean_ms"]),
                     _fmt(r["p90_ms"]), _fmt(r["p99_ms"]), _fmt(r["std_ms"]), _fmt(r["throughput_items_s"], 1),
                     _fmt(r["cold_ms"], 1), _fmt(r.get("peak_rss_mb"), 0), _model_mb(r),
                     f"{r['speedup']:.2f}x" if r.get("speedup") else "-",
                     _fmt(r["fidelity_max_rel"], 2)])
    m = result["machine"]
    print_table(f"latency (ms), input {'x'.join(map(str, result['input_shape']))}, baseline {result['baseline']}",
                ["runtime", "thr", "batch", "p50", "mean", "p90", "p99", "std", "items/s", "cold", "peak MB",
                 "model MB", "speedup", "max rel err"], rows,
                [f"{m['cpu']} ({m['cores']} cores, {' '.join(m['isa'])})"] + baseline_notes(result)
                + _memory_notes(result["records"]))


def baseline_notes(result: dict[str, Any]) -> list[str]:
    """What the speedups are against, per (threads, batch), and which rows are not f32."""
    recs = result["records"]
    against: dict[str, list[str]] = {}
    for r in recs:
        if r.get("baseline_runtime"):
            against.setdefault(r["baseline_runtime"], []).append(f"{r['threads']}t b{r['batch']}")
    lines = []
    if result.get("baseline") == "best-dense":
        dense = ", ".join(result.get("dense_runtimes") or [])
        lines.append(f"speedup: over the fastest dense f32 runtime timed at the same threads and batch ({dense})"
                     + (": " + "; ".join(f"{k} at {', '.join(v)}" for k, v in against.items()) if against
                        else ": none was timed, so no speedups"))
    elif result.get("baseline") not in (None, "-"):
        lines.append(f"speedup: over {result['baseline']} at the same threads and batch (--baseline)")
    lines += [f"{r['runtime']} {r['threads']}t b{r['batch']} computes in {r['precision']}, not f32 "
              f"(max rel err shows what it costs); never a best-dense baseline"
              for r in recs if r.get("precision", "f32") != "f32"]
    return lines


def _memory_notes(records: list[dict[str, Any]]) -> list[str]:
    if not any(r.get("peak_rss_mb") is not None or r.get("peak_rss_error") for r in records):
        return []
    lines = ["peak MB: peak resident memory of a fresh process that loads this configuration and runs it "
             "(Python, st-deploy/torch and the runtime included); model MB: peak minus that runtime's "
             "baseline process (same imports, no model)"]
    from .memory import RUNTIME_LIBRARY
    bases: dict[str, float] = {}
    for r in records:
        if r.get("baseline_rss_mb") is not None:
            bases.setdefault(RUNTIME_LIBRARY.get(r["runtime"], r["runtime"]), r["baseline_rss_mb"])
    if bases:
        lines.append("baseline processes: " + ", ".join(f"{k} {v:.0f} MB" for k, v in bases.items()))
    lines += [f"peak MB of {r['runtime']} {r['threads']}t b{r['batch']} not measured: {r['peak_rss_error']}"
              for r in records if r.get("peak_rss_error")]
    return lines


def write_json(result: dict[str, Any], path: Path) -> Path:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=str))
    return Path(path)


def write_csv(result: dict[str, Any], path: Path) -> Path:
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in result["records"]:
                w.writerow(r)
    return Path(path)


def write_plot(result: dict[str, Any], path: Path) -> Path:
    """Latency per configuration (p50 bar with p10-p90 whiskers from the summary), speedups annotated."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = result["records"]
    labels = [f"{r['runtime']}\n{r['threads']}t b{r['batch']}"
              + ("" if r.get("precision", "f32") == "f32" else f" {r['precision']}") for r in recs]
    p50 = [r["p50_ms"] for r in recs]
    lo = [r["p50_ms"] - r["min_ms"] for r in recs]
    hi = [r["p90_ms"] - r["p50_ms"] for r in recs]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(recs)), 4.5))
    bars = ax.bar(range(len(recs)), p50, yerr=[lo, hi], capsize=3, color="#4c78a8")
    for bar, r in zip(bars, recs):
        if r.get("speedup"):
            ax.annotate(f"{r['speedup']:.2f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(range(len(recs)), labels, fontsize=7)
    ax.set_ylabel("latency (ms): p50, whiskers min..p90")
    against = sorted({r["baseline_runtime"] for r in recs if r.get("baseline_runtime")})
    ax.set_title(f"{result['machine']['cpu'][:60]} - speedup vs {result['baseline']}"
                 + (f" ({', '.join(against)})" if result["baseline"] == "best-dense" and against else ""), fontsize=9)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path)
