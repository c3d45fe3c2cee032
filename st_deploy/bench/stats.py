"""Latency statistics of one benchmark configuration."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def summarize(times_s: Sequence[float], batch: int) -> dict[str, float]:
    """min / mean / p50 / p90 / p99 / std in milliseconds and throughput in items per second.

    Percentiles use linear interpolation between order statistics (numpy's default); std is the
    sample standard deviation (ddof=1; 0 for one sample); throughput is batch / mean latency,
    the sustained rate of back-to-back calls.
    """
    if len(times_s) == 0:
        raise ValueError("no timings to summarise")
    t = np.asarray(times_s, dtype=np.float64) * 1e3
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("timings must be finite and non-negative")
    mean = float(t.mean())
    return {
        "n": int(t.size),
        "min_ms": float(t.min()),
        "mean_ms": mean,
        "p50_ms": float(np.percentile(t, 50)),
        "p90_ms": float(np.percentile(t, 90)),
        "p99_ms": float(np.percentile(t, 99)),
        "std_ms": float(t.std(ddof=1)) if t.size > 1 else 0.0,
        "throughput_items_s": batch * 1e3 / mean if mean > 0 else math.inf,
    }


def speedup(baseline_ms: float, ms: float) -> float:
    return baseline_ms / ms if ms > 0 else math.inf
