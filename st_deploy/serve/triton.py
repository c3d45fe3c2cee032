"""A Triton Inference Server model repository for an ONNX artifact (onnxruntime backend).

Needs: an ONNX export folder (manifest target "onnx"). Promises: REPO/NAME/config.pbtxt (text
format of Triton's ModelConfig: backend onnxruntime, inputs/outputs with their dims, batching,
instance group, intra-op threads) and REPO/NAME/1/model.onnx; for the sparse model also a copy of
our custom-op library, REPO/NAME/libst_deploy_ort.so, named in model_operations
{ op_library_filename } by the absolute path it will have where Triton runs (default: where it was
written here; pass op_library= when the repository is mounted elsewhere, e.g. /models/NAME/...).
The library was built against ONNX Runtime's API 21 headers: Triton's onnxruntime backend must
ship ORT >= 1.21. The folder is written atomically (the previous one or the new one, never half).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..artifact import read_manifest
from ..errors import DeployError
from .model import DEFAULT_MAX_BATCH, tensor_spec
from .protocol import TensorSpec


def _quote(s: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tensor(s: TensorSpec, batched: bool) -> str:
    dims = list(s.shape[1:] if batched else s.shape)
    if any(d == -1 for d in dims):
        raise DeployError(f"tensor {s.name!r}: a dynamic dimension other than the batch ({list(s.shape)}) "
                          f"is not supported in a Triton config here")
    return (f"  {{\n    name: {_quote(s.name)}\n    data_type: TYPE_{s.datatype}\n"
            f"    dims: [ {', '.join(map(str, dims))} ]\n  }}")


def triton_config(manifest: dict, name: str, sparse: bool, instances: int, max_batch: int, threads: int,
                  max_delay_us: int, op_library: str | None) -> str:
    """config.pbtxt text for an ONNX artifact's manifest."""
    inputs = [tensor_spec(e, "manifest") for e in manifest["inputs"]]
    outputs = [tensor_spec(e, "manifest") for e in manifest["outputs"]]
    batched = all(s.shape[:1] == (-1,) for s in inputs + outputs)
    lines = [f"name: {_quote(name)}", 'backend: "onnxruntime"', 'default_model_filename: "model.onnx"',
             f"max_batch_size: {max_batch if batched else 0}",
             "input [\n" + ",\n".join(_tensor(s, batched) for s in inputs) + "\n]",
             "output [\n" + ",\n".join(_tensor(s, batched) for s in outputs) + "\n]",
             f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_CPU\n  }}\n]"]
    if batched and max_batch > 1:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_delay_us}\n}}")
    if sparse:
        assert op_library is not None
        lines.append(f"model_operations {{\n  op_library_filename: [ {_quote(op_library)} ]\n}}")
    lines.append(f'parameters {{\n  key: "intra_op_thread_count"\n  value {{\n    string_value: "{threads}"\n  }}\n}}')
    return "\n".join(lines) + "\n"


def write_triton_repo(artifact: str | Path, repo: str | Path, name: str | None = None, dense: bool = False,
                      instances: int = 1, max_batch: int = DEFAULT_MAX_BATCH, threads: int = 1,
                      max_delay_us: int = 0, op_library: str | None = None, force: bool = False) -> Path:
    """Write REPO/NAME for the ONNX artifact folder `artifact` (see the module docstring); returns REPO/NAME.

    dense: serve model.dense.onnx (no custom ops) instead of model.sparse.onnx. The library is
    copied and named only where the model uses st.sparse ops.
    """
    from ..io.atomic import atomic_dir
    from ..runtime.ort import LIBRARY_NAME, _uses_sparse_ops, ort_library_path
    artifact, repo = Path(artifact), Path(repo)
    manifest = read_manifest(artifact)
    if manifest["target"]["backend"] != "onnx":
        raise DeployError(f"{artifact}: a Triton repository is written for ONNX artifacts (--target onnx)")
    for flag, v in (("instances", instances), ("max_batch", max_batch), ("threads", threads)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise DeployError(f"Triton repository: {flag} must be an integer >= 1, got {v!r}")
    name = name or manifest.get("source", {}).get("name") or artifact.name
    if not name or "/" in name or name.startswith(".") or not name.isprintable():
        raise DeployError(f"Triton model name {name!r}: must be printable, hold no '/' and not start with '.'")
    model_file = artifact / ("model.dense.onnx" if dense else "model.sparse.onnx")
    if not model_file.is_file():
        raise DeployError(f"{artifact}: {model_file.name} is missing")
    lib = None
    sparse = _uses_sparse_ops(model_file)  # a --format dense export's sparse model may hold no st.sparse op
    if sparse:
        lib = ort_library_path()
        if not lib.is_file():
            raise DeployError(f"the st.sparse custom-op library {lib} is missing; build the package, or write a "
                              f"dense Triton repository")
    final = repo / name
    config = triton_config(manifest, name, sparse=sparse, instances=instances, max_batch=max_batch,
                           threads=threads, max_delay_us=max_delay_us,
                           op_library=op_library or str((final / LIBRARY_NAME).resolve()))
    with atomic_dir(final, force=force) as tmp:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a repository is meant to be shared
        (tmp / "1").mkdir()
        shutil.copyfile(model_file, tmp / "1" / "model.onnx")
        if lib is not None:
            shutil.copyfile(lib, tmp / LIBRARY_NAME)
        (tmp / "config.pbtxt").write_text(config)
    return final
