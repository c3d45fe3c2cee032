"""export/onnx: a Graph -> model.dense.onnx, model.sparse.onnx and manifest.json.

Needs a Graph (compacted; conv/linear nodes with their remaining masks) and a torch callable
computing the ticket's output. Promises both models pass the ONNX checker, run in onnxruntime
(the sparse one with st_deploy.ort_session) and match the reference within `tolerance` relative
error on a seeded input, or else a FidelityError and nothing written.
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path
from typing import Any, Callable

import onnx

from ...artifact import DENSE_ONNX, SPARSE_ONNX, manifest, target_block, tensors, write_manifest
from ...errors import DeployError, FidelityError
from ...graph.ir import Graph
from ...graph.fidelity import compare, input_description, reference_outputs, seeded_input
from ...graph.opaque import opaque_ops
from ...io.atomic import atomic_dir
from ...plan import Plan, plan as make_plan, planned
from ...plan.padding import BLOCK, MAX_GROWTH, pad_channels
from ...graph.shapes import infer_shapes
from .dense import OPSET, dense_model
from .fidelity import run_onnx
from .sparse_ops import DOMAIN, DOMAIN_VERSION, sparse_model

DENSE_FILE, SPARSE_FILE = DENSE_ONNX, SPARSE_ONNX


def _check(model: onnx.ModelProto, what: str, full: bool) -> None:
    try:
        onnx.checker.check_model(model, full_check=full)
    except onnx.checker.ValidationError as e:
        raise AssertionError(f"{what} fails the ONNX checker: {str(e).splitlines()[0]}") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_onnx(graph: Graph, reference: Callable[[Any], Any], out: str | Path, input_shape: tuple[int, ...],
                format: str = "auto", tolerance: float = 1e-4, force: bool = False,
                source: dict[str, str] | None = None, target: str = "llvm", cost_table: Any = None,
                compaction: dict[str, Any] | None = None) -> Path:
    out = Path(out)
    if not tolerance > 0:
        raise DeployError(f"tolerance must be > 0, got {tolerance}")
    graph, padding = pad_channels(graph)
    shapes = infer_shapes(graph, input_shape)
    the_plan: Plan = make_plan(graph, target=target, format=format, cost_table=cost_table, shapes=shapes,
                               backend="onnx")
    doc = f"st-deploy export of {(source or {}).get('name') or 'a graph'}"
    dense = dense_model(graph, shapes, doc)
    _check(dense, DENSE_FILE, full=True)
    sparse = sparse_model(planned(graph, the_plan.formats()), shapes, doc)
    # The custom domain has no registered schema, so only the structural check applies.
    _check(sparse, SPARSE_FILE, full=False)

    x = seeded_input(tuple(input_shape))
    ref = reference_outputs(reference, x)
    with atomic_dir(out, force=force) as tmp:
        files = {DENSE_FILE: dense.SerializeToString(), SPARSE_FILE: sparse.SerializeToString()}
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        fidelity = {}
        for name in files:
            fidelity[name] = compare(ref, run_onnx(tmp / name, x))
        bad = {k: v for k, v in fidelity.items() if not v["rel"] <= tolerance}
        if bad:
            detail = ", ".join(f"{k}: rel {v['rel']:.3g} (max abs {v['max_abs']:.3g})" for k, v in bad.items())
            raise FidelityError(f"{out}: exported model differs from the ticket beyond tolerance {tolerance:g}: "
                                f"{detail}; nothing written")
        padding_entry = {
            "block": BLOCK, "rule": f"odd channel counts padded with zero channels to a multiple of {BLOCK} "
                                    f"(ORT's NCHWc block) where that adds at most {MAX_GROWTH:.0%}: st_deploy.plan.padding",
            "tensors": padding}
        write_manifest(tmp, _manifest(graph, shapes, the_plan, source or {}, fidelity, tolerance, input_shape,
                                      {k: _sha256(v) for k, v in files.items()}, padding_entry, compaction))
        # atomic_dir's temporary folder is private (mkdtemp: 0700); an artifact is meant to be shared
        # (the TVM export does the same).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
    return out


def _manifest(graph: Graph, shapes: dict, the_plan: Plan, source: dict[str, str], fidelity: dict,
              tolerance: float, input_shape: tuple[int, ...], digests: dict[str, str],
              padding: dict[str, Any], compaction: dict[str, Any] | None) -> dict[str, Any]:
    import onnxruntime

    from ...version import __version__

    roles = {DENSE_FILE: "dense", SPARSE_FILE: "sparse"}
    return manifest(
        target=target_block("onnx", "onnx", "any", "cpu", True, {
            "opsets": {"ai.onnx": OPSET, DOMAIN: DOMAIN_VERSION},
            "custom_op_library": "st_deploy.ort_library_path() (register before loading model.sparse.onnx)"}),
        source={k: source.get(k, "") for k in ("name", "path", "sha256")},
        inputs=tensors(graph.inputs, shapes, free_batch=True),
        outputs=tensors(graph.outputs, shapes, free_batch=True),
        files={name: {"sha256": d, "role": roles[name]} for name, d in digests.items()},
        compaction=compaction if compaction is not None else {"not_run": "the exporter was given a graph"},
        plan={"source": "st_deploy.plan", **the_plan.to_dict()},
        channel_padding=padding,
        opaque_ops=opaque_ops(graph),
        fidelity={"input": input_description(input_shape), "tolerance": tolerance,
                  "measured_on": "these files, in onnxruntime on this machine",
                  "files": {k: {m: float(f"{v:.3g}") for m, v in d.items()} for k, d in fidelity.items()}},
        warnings=[],
        notes=[],
        load="st_deploy.ort_session('model.sparse.onnx') (registers the st.sparse ops), or any onnxruntime "
             "with st_deploy.ort_library_path() registered; model.dense.onnx needs nothing",
        versions={"st_deploy": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                  "python": platform.python_version()},
    )
