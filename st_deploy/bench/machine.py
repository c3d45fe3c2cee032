"""What machine a benchmark ran on: recorded next to every result."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

LIBRARIES = ("st-deploy", "torch", "onnx", "onnxruntime", "apache-tvm", "apache-tvm-ffi", "numpy")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa_flags() -> list[str]:
    wanted = ("avx512f", "avx512bw", "avx512vl", "avx2", "fma", "neon", "asimd", "sve")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def machine_info() -> dict[str, Any]:
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "isa": isa_flags(),
        "machine": platform.machine(), "system": platform.platform(), "python": platform.python_version(),
        "versions": versions,
    }


def machine_slug() -> str:
    """A file-name-safe name for benchmarks/results/<machine>.json."""
    cpu = cpu_model().lower()
    keep = "".join(c if c.isalnum() else "-" for c in cpu)
    while "--" in keep:
        keep = keep.replace("--", "-")
    return f"{keep.strip('-')[:48]}-{os.cpu_count()}c"
