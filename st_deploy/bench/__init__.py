"""bench: latency of a ticket across runtimes, threads and batch sizes."""

from .core import Record, bench
from .output import print_results, write_csv, write_json, write_plot
from .runtimes import RUNTIMES, BenchSource
from .stats import summarize

__all__ = ["bench", "Record", "RUNTIMES", "BenchSource", "summarize", "print_results", "write_json",
           "write_csv", "write_plot"]
