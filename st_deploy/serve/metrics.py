"""Server metrics in Prometheus' text exposition format (version 0.0.4), standard library only.

Counters of requests and failures (by reason: bad_request, runtime, overloaded), histograms of
request latency (seconds, from the start of reading the request to its response) and of the batch sizes
the instances ran, and the queue depth as a gauge. One lock; every update is a few additions.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
FAILURE_REASONS = ("bad_request", "runtime", "overloaded")


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, v)] += 1
        self.sum += v
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, running = [], 0
        for bound, c in zip((*self.bounds, float("inf")), self.counts):
            running += c
            le = "+Inf" if bound == float("inf") else repr(float(bound))
            out.append(f'{name}_bucket{{{labels},le="{le}"}} {running}')
        out.append(f"{name}_sum{{{labels}}} {self.sum!r}")
        out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, int] = defaultdict(int)
        self._failures: dict[tuple[str, str], int] = defaultdict(int)
        self._latency: dict[str, _Histogram] = {}
        self._batch: dict[str, _Histogram] = {}
        self._queue: dict[str, int] = defaultdict(int)

    def request(self, model: str, seconds: float, failure: str | None = None) -> None:
        """One inference request answered; failure is one of FAILURE_REASONS or None."""
        assert failure is None or failure in FAILURE_REASONS, failure
        with self._lock:
            self._requests[model] += 1
            if failure is not None:
                self._failures[(model, failure)] += 1
            self._latency.setdefault(model, _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, model: str, size: int) -> None:
        with self._lock:
            self._batch.setdefault(model, _Histogram(BATCH_BUCKETS)).observe(size)

    def queue_depth(self, model: str, depth: int) -> None:
        with self._lock:
            self._queue[model] = depth

    def text(self, models: list[str]) -> str:
        lines: list[str] = []
        with self._lock:
            lines += ["# HELP st_serve_requests_total Inference requests answered.",
                      "# TYPE st_serve_requests_total counter"]
            lines += [f'st_serve_requests_total{{model="{_label(m)}"}} {self._requests[m]}' for m in models]
            lines += ["# HELP st_serve_request_failures_total Inference requests answered with an error, by reason.",
                      "# TYPE st_serve_request_failures_total counter"]
            lines += [f'st_serve_request_failures_total{{model="{_label(m)}",reason="{r}"}} {self._failures[(m, r)]}'
                      for m in models for r in FAILURE_REASONS]
            lines += [("# HELP st_serve_request_duration_seconds Time from the start of reading a request to its "
                       "response."),
                      "# TYPE st_serve_request_duration_seconds histogram"]
            for m in models:
                lines += self._latency.get(m, _Histogram(LATENCY_BUCKETS)).lines(
                    "st_serve_request_duration_seconds", f'model="{_label(m)}"')
            lines += ["# HELP st_serve_batch_size Batch sizes the instances ran (sum of the merged requests' batches).",
                      "# TYPE st_serve_batch_size histogram"]
            for m in models:
                lines += self._batch.get(m, _Histogram(BATCH_BUCKETS)).lines("st_serve_batch_size",
                                                                           f'model="{_label(m)}"')
            lines += ["# HELP st_serve_queue_depth Requests waiting for an instance.",
                      "# TYPE st_serve_queue_depth gauge"]
            lines += [f'st_serve_queue_depth{{model="{_label(m)}"}} {self._queue[m]}' for m in models]
        return "\n".join(lines) + "\n"
