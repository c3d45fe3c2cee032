"""An artifact folder: its fixed file names and its manifest, one schema for every target.

Every exporter builds its manifest with `manifest(...)` and writes it with `write_manifest`;
every reader (runtime, bench, serve, CLI) takes it from `read_manifest`, which refuses a
manifest of another format_version with one line naming both versions.

Schema (format_version 2), the same keys for ONNX and TVM artifacts:
  target          {name, backend ("onnx" | "tvm"), arch ("any" for a portable ONNX file), device
                   ("cpu" | "cuda"), kernels (st-deploy's sparse kernels are in the artifact),
                   options (the backend's own: ONNX opsets; the TVM target, linker, ELF facts)}
  source          {name, path, sha256} of the ticket file ("" where the export was given a graph)
  inputs, outputs [{name, shape, dtype}]; a batch dimension the artifact leaves free is "N"
  files           {file name: {sha256, role ("dense" | "sparse" | "library")}}
  compaction      compaction's report (st_deploy.compact), or {"not_run": why}
  plan            {source, ..., layers: [{name, kind, format, sparsity, ...}]}
  channel_padding {block, rule, tensors}: zero channels the exporter added (tensors [] if none)
  opaque_ops      graph nodes run through torch's ONNX exporter, not lowered by st-deploy
  fidelity        {input, tolerance, measured_on, files: {file name: {max_abs, rel}}}
  warnings, notes [str]
  load            how to run it, in one line
  versions        {st_deploy, python, and the backend's packages}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import DeployError

MANIFEST_FILE = "manifest.json"
DENSE_ONNX, SPARSE_ONNX = "model.dense.onnx", "model.sparse.onnx"
TVM_LIBRARY = "model.so"

FORMAT_VERSION = 2
BACKENDS = ("onnx", "tvm")
KEYS = ("format_version", "target", "source", "inputs", "outputs", "files", "compaction", "plan",
        "channel_padding", "opaque_ops", "fidelity", "warnings", "notes", "load", "versions")
TARGET_KEYS = ("name", "backend", "arch", "device", "kernels", "options")


def target_block(name: str, backend: str, arch: str, device: str, kernels: bool,
                 options: dict[str, Any]) -> dict[str, Any]:
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: one of {BACKENDS}")
    return {"name": name, "backend": backend, "arch": arch, "device": device, "kernels": kernels,
            "options": options}


def tensors(names: list[str], shapes: dict[str, tuple[int, ...]], free_batch: bool) -> list[dict[str, Any]]:
    """The inputs or outputs entry: free_batch writes the batch dimension as "N"."""
    return [{"name": n, "shape": ["N", *shapes[n][1:]] if free_batch else list(shapes[n]), "dtype": "float32"}
            for n in names]


def manifest(**fields: Any) -> dict[str, Any]:
    """The manifest dict from every key of the schema but format_version (a missing or an extra
    key is a bug in the exporter, so it raises TypeError)."""
    want = set(KEYS) - {"format_version"}
    if set(fields) != want:
        raise TypeError(f"manifest: missing {sorted(want - set(fields))}, unknown {sorted(set(fields) - want)}")
    if set(fields["target"]) != set(TARGET_KEYS):
        raise TypeError(f"manifest target keys {sorted(fields['target'])}, expected {sorted(TARGET_KEYS)}")
    return {"format_version": FORMAT_VERSION, **{k: fields[k] for k in KEYS[1:]}}


def write_manifest(folder: Path, m: dict[str, Any]) -> None:
    (Path(folder) / MANIFEST_FILE).write_text(json.dumps(m, indent=1) + "\n")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an artifact folder, checked for this schema; DeployError in one line if it
    is absent, not JSON, of another format_version, or lacks a key."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        tickets = sorted(folder.glob("*.state_dict")) + sorted(folder.glob("*.pt")) if folder.is_dir() else []
        hint = f" (it holds a ticket: pass {tickets[0]})" if tickets else ""
        raise DeployError(f"{folder}: no {MANIFEST_FILE}; not an st-deploy export folder{hint}")
    try:
        m = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise DeployError(f"{path}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise DeployError(f"{path}: not valid JSON ({e.msg})") from None
    if not isinstance(m, dict):
        raise DeployError(f"{path}: not a manifest (a JSON {type(m).__name__}, not an object)")
    version = m.get("format_version")
    if version != FORMAT_VERSION:
        raise DeployError(f"{path}: manifest format_version {version!r}, this st-deploy reads {FORMAT_VERSION} "
                          f"(one schema for ONNX and TVM since version 2); re-export the ticket")
    missing = [k for k in KEYS if k not in m]
    target = m.get("target")
    if not missing and isinstance(target, dict):
        missing = [f"target.{k}" for k in TARGET_KEYS if k not in target]
    elif not missing:
        missing = ["target (an object)"]
    if missing:
        raise DeployError(f"{path}: manifest lacks {', '.join(missing)}; re-export the ticket")
    if target["backend"] not in BACKENDS:
        raise DeployError(f"{path}: unknown artifact backend {target['backend']!r} (st-deploy writes "
                          f"{' or '.join(BACKENDS)})")
    return m
