"""The runtimes a benchmark compares, each able to prepare a callable for (threads, batch).

A runtime needs either the ticket itself (torch, torch-compact) or an exported artifact
(ONNX, TVM); artifacts are exported once per ticket sha256 + target and cached.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..artifact import DENSE_ONNX, MANIFEST_FILE, SPARSE_ONNX, read_manifest
from ..cache import cache_dir
from ..errors import DeployError
from ..ticket import Ticket

RUNTIMES = ("torch", "torch-compact", "ort-plain", "ort-dense", "ort-sparse", "openvino", "openvino-bf16",
            "tvm-dense", "tvm-sparse")
TICKET_DEFAULT = ("torch", "ort-dense", "ort-sparse")
GPU_RUNTIMES = ("ort-dense", "tvm-dense", "tvm-sparse")  # the others have no --device cuda path
# The runtimes that compute the unpruned-shape model densely in f32: what a user has without the
# sparse path. "best-dense", the default speedup baseline, is the fastest of these in each
# (threads, batch). openvino-bf16 is left out: it trades accuracy (~1e-2) for its speed.
DENSE_RUNTIMES = ("torch", "ort-plain", "ort-dense", "openvino", "tvm-dense")
BEST_DENSE = "best-dense"
ON_REQUEST = ("openvino-bf16",)  # never in "all": only when named
OPENVINO_RUNTIMES = ("openvino", "openvino-bf16")
RunFn = Callable[[np.ndarray], Any]


def cache_root() -> Path:
    return cache_dir()


@dataclass
class BenchSource:
    """A ticket (and, for artifact folders, the artifact) plus lazily made exports."""

    ticket: Ticket | None
    artifact: Path | None = None
    target: str = "llvm"
    input_shape: tuple[int, ...] | None = None  # spatial size the artifacts are exported for
    plain_model: Path | None = None  # ort-plain's ONNX file, when handed over instead of the ticket
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
            served = ", ".join(artifact_runtimes(self.artifact)[0]) if self.artifact else "nothing"
            raise DeployError(f"runtime {runtime} needs the ticket; the artifact folder {self.artifact} "
                              f"serves {served}")
        return self.ticket

    def exported(self, target: str, fmt: str = "auto", batch: int = 1) -> Path:
        """Folder of the artifact for `target` ('onnx' or a TVM target) and plan format,
        exported on first use and cached by ticket sha256 + target + format + input size.
        batch: a TVM artifact's batch is fixed at export, so each batch timed gets its own;
        an ONNX artifact runs any batch."""
        if self.artifact is not None:
            return self.artifact
        shape = tuple(self.input_shape or self.require_ticket(target).default_input_shape)
        batch = 1 if target == "onnx" else batch
        key = f"{target}-{fmt}-{'x'.join(map(str, shape[1:]))}" + (f"-b{batch}" if batch != 1 else "")
        if key not in self._cache:
            from ..export import export
            slug = "".join(c if c.isalnum() else "_" for c in key)
            out = cache_root() / "artifacts" / f"{self.key()}-{slug}"
            if not (out / MANIFEST_FILE).is_file():
                out.parent.mkdir(parents=True, exist_ok=True)
                export(self.require_ticket(target), target=target, out=out, format=fmt, force=True,
                       input_shape=(batch, *shape[1:]))
            self._cache[key] = out
        return self._cache[key]

    def plain_onnx(self) -> Path:
        """ort-plain's model: a plain torch.onnx.export of the ticket's module (st_deploy.bench.plain_export),
        made on first use and cached by ticket sha256 + input size."""
        if self.plain_model is not None:
            return self.plain_model
        ticket = self.require_ticket("ort-plain")
        shape = tuple(self.input_shape or ticket.default_input_shape)
        path = cache_root() / "plain" / f"{self.key()}-{'x'.join(map(str, shape[1:]))}.onnx"
        if not path.is_file():
            from .plain_export import plain_onnx_export
            plain_onnx_export(ticket.module, (1, *shape[1:]), path)
        return path


def artifact_runtimes(folder: Path) -> tuple[list[str], str]:
    """The runtimes an exported artifact folder serves, and what kind of artifact it is (a phrase).

    An ONNX folder holds both models: ort-dense and ort-sparse, and OpenVINO reads its dense one
    (openvino, openvino-bf16; timed only when named or with "all"). A TVM folder holds one model.so:
    tvm-dense if it was exported with --format dense, else tvm-sparse (as the benchmark's own
    tvm-sparse export is --format auto).
    """
    manifest = read_manifest(folder)
    target = manifest["target"]
    if target["backend"] == "onnx":
        names = [r for r, f in (("ort-dense", DENSE_ONNX), ("ort-sparse", SPARSE_ONNX)) if (Path(folder) / f).is_file()]
        if not names:
            raise DeployError(f"{folder}: an ONNX artifact without model.dense.onnx or model.sparse.onnx")
        if "ort-dense" in names:
            names += list(OPENVINO_RUNTIMES)
        return names, "an ONNX artifact"
    plan = manifest["plan"]
    layers = plan["layers"]
    sparse = sum(1 for lp in layers if lp["format"] != "dense")
    mode = plan.get("mode")
    how = f"--format {mode}" if mode else str(plan.get("source", "plan unrecorded")).split(":")[0]
    return (["tvm-dense" if mode == "dense" else "tvm-sparse"],
            f"a TVM artifact for {target['name']}, {how}, {sparse} of {len(layers)} layers sparse")


def choose_runtimes(src: "BenchSource", runtimes: Sequence[str] | str | None,
                    device: str = "cpu") -> tuple[list[str], str | None]:
    """The runtimes to time and, where st-deploy chose them, a line saying which and why.

    None: a ticket's usual three (TICKET_DEFAULT), or what an artifact folder serves (ORT's models;
    on cuda, those with a GPU path); "all": every runtime, or again what a folder serves, with
    openvino when it is installed (the line says when it is not) and never the ON_REQUEST ones.
    Runtimes named for a folder must be ones it serves: a TVM folder holds one model.so, which
    would otherwise be timed under either name.
    """
    if src.artifact is None:
        if runtimes is None:
            return list(TICKET_DEFAULT), f"runtimes: {', '.join(TICKET_DEFAULT)} (the default; --runtime to choose)"
        if runtimes == "all":
            chosen, note = _all_installed(list(RUNTIMES))
            return chosen, f"runtimes: all, {', '.join(chosen)}{note}"
        return list(runtimes), None
    folder = src.artifact
    served, kind = artifact_runtimes(folder)
    if runtimes is None or runtimes == "all":
        usual = [r for r in served if runtimes == "all" or r not in OPENVINO_RUNTIMES]
        chosen = [r for r in usual if device == "cpu" or r in GPU_RUNTIMES]
        dropped = [r for r in usual if r not in chosen]
        note = f"; {', '.join(dropped)} has no GPU path" if dropped else ""
        if runtimes == "all":
            chosen, missing = _all_installed(chosen)
            note += missing
        if not chosen:
            raise DeployError(f"{folder}: {kind}, serves only {', '.join(served)}{note}")
        return chosen, (f"runtimes: {', '.join(chosen)}, what {folder} serves ({kind}{note}); "
                        f"--runtime to choose")
    for r in runtimes:
        if r in RUNTIMES and r not in served:
            ticket_only = r.startswith("torch") or r == "ort-plain"
            need = "the ticket" if ticket_only else "an artifact exported for it, or the ticket"
            raise DeployError(f"runtime {r}: {folder} is {kind} and serves {', '.join(served)}; {r} needs {need}")
    return list(runtimes), None


def _all_installed(names: list[str]) -> tuple[list[str], str]:
    """`names` less the ON_REQUEST runtimes and, when OpenVINO is not installed, openvino; and the
    clause saying what was left out and why (empty when nothing was)."""
    import importlib.util
    names = [r for r in names if r not in ON_REQUEST]
    if "openvino" in names and importlib.util.find_spec("openvino") is None:
        from .openvino_rt import INSTALL_HINT
        return [r for r in names if r != "openvino"], f"; openvino left out: not installed ({INSTALL_HINT})"
    return names, ""


@lru_cache(maxsize=1)
def toolkit_fingerprint() -> str:
    """What an exported artifact depends on besides the ticket: the st-deploy version, its own
    Python sources (compaction, planner, exporters), the kernel sources and the cost tables the
    planner reads. Cached artifacts are keyed by it, so a changed kernel, planner or exporter
    re-exports instead of benchmarking a stale artifact."""
    from .. import __version__

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
        from ..runtime.libpath import candidates
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


def prepare(runtime: str, source: BenchSource, threads: int, device: str = "cpu",
            shape: Sequence[int] | None = None) -> RunFn:
    """A callable running one inference on `runtime` with `threads` threads on `device`.

    device "cuda": ort-dense through ORT's CUDA provider, tvm-* through a TVM cuda artifact;
    the other runtimes have no GPU path and say so. shape: the input shape the callable will be
    given; openvino compiles for it (without it, any batch runs, on dynamic-shape kernels).
    openvino's callable has a `precision` attribute: what the compiled model computes in.
    """
    if device == "cuda" and runtime not in GPU_RUNTIMES:
        raise DeployError(f"runtime {runtime} has no GPU path (--device cuda serves ort-dense, tvm-dense, "
                          f"tvm-sparse)")
    if runtime == "torch":
        return _torch_runner(source.require_ticket(runtime).module, threads)
    if runtime == "torch-compact":
        return _torch_runner(source.compacted().module, threads)
    if runtime == "ort-plain":
        from .plain_export import plain_ort_session
        session = plain_ort_session(source.plain_onnx(), threads)
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})
    if runtime in OPENVINO_RUNTIMES:
        from .openvino_rt import PRECISION_ASKED, OpenVinoRun, require_openvino
        require_openvino()  # before an export that would be of no use
        return OpenVinoRun(_onnx_model(source, runtime), threads, PRECISION_ASKED[runtime], shape)
    if runtime in ("ort-dense", "ort-sparse"):
        from ..runtime.ort import ort_session
        session = ort_session(_onnx_model(source, runtime), threads=threads, device=device)
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})
    if runtime in ("tvm-dense", "tvm-sparse"):
        from ..runtime.runner import load
        target = "cuda" if device == "cuda" else source.target
        folder = source.exported(target, "auto" if runtime == "tvm-sparse" else "dense",
                                 batch=int(shape[0]) if shape is not None else 1)
        runner = load(folder, threads=threads)
        on_gpu = runner.manifest["target"]["device"] == "cuda"
        if on_gpu != (device == "cuda"):  # the records say which device ran: it must be the one asked for
            raise DeployError(f"{folder}: a {'cuda' if on_gpu else 'CPU'} artifact, but --device {device}; "
                              f"pass --device {'cuda' if on_gpu else 'cpu'}")
        return runner.run
    raise DeployError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")


def _onnx_model(source: BenchSource, runtime: str) -> Path:
    """The ONNX artifact's model a runtime reads: model.sparse.onnx for ort-sparse, else the dense one."""
    folder = source.exported("onnx")
    model = folder / (SPARSE_ONNX if runtime == "ort-sparse" else DENSE_ONNX)
    if not model.is_file():
        raise DeployError(f"{folder}: no {model.name}; runtime {runtime} needs an ONNX artifact")
    return model

