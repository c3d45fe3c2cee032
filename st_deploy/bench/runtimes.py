"""The runtimes a benchmark compares, each able to prepare a callable for (threads, batch).

A runtime needs either the ticket itself (torch, torch-compact) or an exported artifact
(ONNX, TVM); artifacts are exported once per ticket sha256 + target and cached.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import DeployError
from ..ticket import Ticket

RUNTIMES = ("torch", "torch-compact", "ort-dense", "ort-sparse", "tvm-dense", "tvm-sparse")
RunFn = Callable[[np.ndarray], Any]


def cache_root() -> Path:
    return Path(os.environ.get("ST_DEPLOY_CACHE", Path.home() / ".cache" / "st-deploy"))


@dataclass
class BenchSource:
    """A ticket (and, for artifact folders, the artifact) plus lazily made exports."""

    ticket: Ticket | None
    artifact: Path | None = None
    target: str = "llvm"
    input_shape: tuple[int, ...] | None = None  # spatial size the artifacts are exported for
    _cache: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        base = self.ticket.sha256 if self.ticket and self.ticket.sha256 else str(self.artifact)
        return hashlib.sha256(f"{base}:{self.target}:{toolkit_fingerprint()}".encode()).hexdigest()[:16]

    def compacted(self) -> Ticket:
        if "compact" not in self._cache:
            from ..compact import compact
            self._cache["compact"] = compact(self.require_ticket("torch-compact")).ticket
        return self._cache["compact"]

    def require_ticket(self, runtime: str) -> Ticket:
        if self.ticket is None:
            raise DeployError(f"runtime {runtime} needs the ticket; an artifact folder only serves "
                              f"the runtime it was exported for")
        return self.ticket

    def exported(self, target: str, fmt: str = "auto") -> Path:
        """Folder of the artifact for `target` ('onnx' or a TVM target) and plan format,
        exported on first use and cached by ticket sha256 + target + format."""
        if self.artifact is not None:
            return self.artifact
        shape = tuple(self.input_shape or self.require_ticket(target).default_input_shape)
        key = f"{target}-{fmt}-{'x'.join(map(str, shape[1:]))}"
        if key not in self._cache:
            from ..export import export
            slug = "".join(c if c.isalnum() else "_" for c in key)
            out = cache_root() / "artifacts" / f"{self.key()}-{slug}"
            if not (out / "manifest.json").is_file():
                out.parent.mkdir(parents=True, exist_ok=True)
                export(self.require_ticket(target), target=target, out=out, format=fmt, force=True,
                       input_shape=(1, *shape[1:]))
            self._cache[key] = out
        return self._cache[key]


@lru_cache(maxsize=1)
def toolkit_fingerprint() -> str:
    """What an exported artifact depends on besides the ticket: the st-deploy version, its own
    Python sources (compaction, planner, exporters), the kernel sources and the cost tables the
    planner reads. Cached artifacts are keyed by it, so a changed kernel, planner or exporter
    re-exports instead of benchmarking a stale artifact."""
    from .. import __version__
    from ..plan.cost import cache_dir

    h = hashlib.sha256(__version__.encode())
    package = Path(__file__).resolve().parents[1]
    for p in sorted(package.rglob("*.py")):
        h.update(str(p.relative_to(package)).encode())
        h.update(p.read_bytes())
    try:
        from ..export.tvm.kernel_objects import kernel_sources
        src: Path | None = kernel_sources()
    except Exception:  # no TVM or no shipped sources: the ORT library's bytes stand in
        src = None
    if src is not None:
        for p in sorted(src.rglob("*")):
            if p.is_file() and p.suffix in (".cc", ".h", ".inc", ".txt", ".cu", ".cuh"):
                h.update(str(p.relative_to(src)).encode())
                h.update(p.read_bytes())
    else:
        from ..libpath import candidates
        for p in candidates("libst_deploy_ort.so")[:1]:
            if p.is_file():
                h.update(p.read_bytes())
    tables = [Path(__file__).resolve().parents[1] / "plan" / "default_cost.json",
              *sorted(cache_dir().glob("cost-*.json"))]
    for p in tables:
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _torch_runner(module: torch.nn.Module, threads: int) -> RunFn:
    def run(x: np.ndarray) -> Any:
        torch.set_num_threads(threads)
        with torch.no_grad():
            return module(torch.from_numpy(x))
    return run


def prepare(runtime: str, source: BenchSource, threads: int, device: str = "cpu") -> RunFn:
    """A callable running one inference on `runtime` with `threads` threads on `device`.

    device "cuda": ort-dense through ORT's CUDA provider, tvm-* through a TVM cuda artifact;
    the other runtimes have no GPU path and say so.
    """
    if device == "cuda" and runtime not in ("ort-dense", "tvm-dense", "tvm-sparse"):
        raise DeployError(f"runtime {runtime} has no GPU path (--device cuda serves ort-dense, tvm-dense, "
                          f"tvm-sparse)")
    if runtime == "torch":
        return _torch_runner(source.require_ticket(runtime).module, threads)
    if runtime == "torch-compact":
        return _torch_runner(source.compacted().module, threads)
    if runtime in ("ort-dense", "ort-sparse"):
        from ..ort import ort_session
        folder = source.exported("onnx")
        model = folder / ("model.dense.onnx" if runtime == "ort-dense" else "model.sparse.onnx")
        if not model.is_file():
            raise DeployError(f"{folder}: no {model.name}; runtime {runtime} needs an ONNX artifact")
        session = ort_session(model, threads=threads, device=device)
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})
    if runtime in ("tvm-dense", "tvm-sparse"):
        from ..runner import load
        target = "cuda" if device == "cuda" else source.target
        folder = source.exported(target, "auto" if runtime == "tvm-sparse" else "dense")
        runner = load(folder, threads=threads)
        on_gpu = runner.manifest["target"]["tvm"]["kind"] == "cuda"
        if on_gpu != (device == "cuda"):  # the records say which device ran: it must be the one asked for
            raise DeployError(f"{folder}: a {'cuda' if on_gpu else 'CPU'} artifact, but --device {device}; "
                              f"pass --device {'cuda' if on_gpu else 'cpu'}")
        return runner.run
    raise DeployError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")


def to_numpy(out: Any) -> np.ndarray:
    """First output of any runtime as a float32 numpy array."""
    if isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, torch.Tensor):
        return out.detach().cpu().numpy()
    return np.asarray(out)
