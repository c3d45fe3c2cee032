"""export/tvm: a Graph or Ticket -> DIR/model.so (Relax VM executable) + DIR/manifest.json.

Needs a compacted Graph (conv/linear nodes with their remaining masks) or a Ticket, and a
target (targets.py). Promises a self-contained model.so (our kernels linked in on CPU targets;
load it with tvm.runtime.load_module + relax.VirtualMachine, or st_deploy.load) whose outputs
match the reference within `tolerance` relative error on a seeded input, else FidelityError
and nothing written. The artifact of a cross target (aarch64, rasp4, cuda) cannot run here:
its fidelity is measured on a host build of the same Relax module, and the manifest says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from ...artifact import manifest as build_manifest, target_block, tensors, write_manifest
from ...errors import DeployError, FidelityError
from ...graph.ir import Graph
from ...graph.fidelity import compare, input_description, reference_outputs, seeded_input
from ...graph.opaque import opaque_ops
from ...io.atomic import atomic_dir
from ...graph.kinds import is_layer, layer_kind, sparse_formats
from ...plan import Plan, plan as make_plan, planned
from ...plan.cost import tvm_table
from ...graph.shapes import infer_shapes
from ...graph.sparse import sparsity
from ...ticket import Ticket
from ..source import Source, resolve
from .build import LIBRARY, check_library, compile_module, export as export_library
from .relax_graph import to_relax
from .targets import TargetSpec, resolve_target

__all__ = ["export_tvm", "default_formats", "resolve_target", "CUDA_SPARSE_AT"]

DEFAULT_SPARSE_AT = 0.5  # plan=None: sparse (csr) for masked layers at least this sparse
# cuda, plan "auto": the sparsity from which our CUDA CSR kernel beats the artifact's dense path
# for that layer kind, read off an H100 (benchmarks/results/h100-cuda-kernels.json, batch 1 and 8).
# Depthwise: sparse taps vs our dense depthwise kernel break even between 70 and 90 %. Other convs:
# the dense path is our BSR kernel at full density, so half the weights already pay. Linear: CSR
# time grows with the nonzeros (1600->1000: 19.3 us at 0 %, 4.2 us at 90 %) and cuda_linear_dense
# takes 4.6 us, so they cross near 88 % (interpolated; batch 8 alike).
CUDA_SPARSE_AT = {"conv1x1": 0.5, "conv": 0.5, "dw": 0.8, "linear": 0.88}


def default_formats(graph: Graph, sparse_at: dict[str, float] | None = None) -> dict[str, str]:
    """csr for every masked conv/linear a kernel takes with sparsity >= its kind's threshold
    (sparse_at; default DEFAULT_SPARSE_AT for every kind), else dense."""
    out = {}
    for n in graph.nodes:
        if is_layer(n):
            kind = layer_kind(n)
            at = DEFAULT_SPARSE_AT if sparse_at is None else sparse_at.get(kind, 2.0)
            sparse_ok = "csr" in sparse_formats(kind) and "mask" in n.params
            sp = sparsity(n.params["weight"], n.params.get("mask"))
            out[n.name] = "csr" if sparse_ok and sp >= at else "dense"
    return out


def _formats(graph: Graph, plan: Any, shapes: dict, spec: TargetSpec,
             cost_table: Any = None) -> tuple[dict[str, str], dict[str, Any]]:
    """(format per layer, the plan's manifest entry) from plan=None | Plan | mode str | {name: format}.

    A mode is planned for the target's CPU (llvm, aarch64, rasp4; a custom or cuda target as llvm)
    with `cost_table` if given, else plan.cost.tvm_table: a table measured on a board for that
    target over TVM RPC, else this machine's table for llvm; the manifest's plan names it."""
    rule = f"default rule: csr where masked and sparsity >= {DEFAULT_SPARSE_AT}"
    if plan is None:
        return default_formats(graph), {"source": rule}
    if plan == "auto" and spec.gpu:
        if cost_table is not None:
            raise DeployError("cost table: --target cuda plans --format auto by a per-kind sparsity rule measured on "
                              "a GPU (CPU cost tables do not apply); pass --format sparse or dense to use the table")
        # The planner's cost tables are CPU measurements: on cuda the thresholds measured on a GPU.
        return default_formats(graph, CUDA_SPARSE_AT), {
            "source": f"cuda rule: csr where masked and sparsity >= {CUDA_SPARSE_AT} per layer kind "
                      f"(break-even measured on an H100, benchmarks/results/h100-cuda-kernels.json)"}
    if isinstance(plan, str):
        target = spec.name if spec.name in ("llvm", "aarch64", "rasp4") else "llvm"
        table = cost_table if cost_table is not None else tvm_table(target)
        plan = make_plan(graph, target=target, format=plan, shapes=shapes, cost_table=table)
    if isinstance(plan, Plan):
        return {lp.name: lp.format for lp in plan.layers}, {"source": "st_deploy.plan", **plan.to_dict()}
    if isinstance(plan, dict):
        layers = {n.name for n in graph.nodes if is_layer(n)}
        bad = {k: v for k, v in plan.items() if k not in layers or v not in ("dense", "csr", "bsr4x1")}
        if bad:
            raise DeployError(f"plan: entries {bad} name no conv/linear layer or no format (dense, csr, bsr4x1)")
        return {k: plan.get(k, "dense") for k in layers}, {"source": "user dict"}
    raise DeployError(f"plan must be None, a Plan, 'auto'/'dense'/'sparse' or {{layer: format}}, "
                      f"not {type(plan).__name__}")


def _check_formats(graph: Graph, formats: dict[str, str]) -> None:
    for n in graph.nodes:
        f = formats.get(n.name)
        if f not in (None, "dense") and f not in sparse_formats(layer_kind(n), "tvm"):
            raise DeployError(f"plan: layer {n.name} ({layer_kind(n)}) has no {f} kernel; "
                              f"choose one of dense, {', '.join(sparse_formats(layer_kind(n), 'tvm'))}")


def _build(lowered_mod: Any, spec: TargetSpec, folder: Path) -> dict[str, Any]:
    executable = compile_module(lowered_mod, spec)
    export_library(executable, spec, folder / LIBRARY)
    return check_library(folder / LIBRARY, spec)


def _target(spec: TargetSpec, kernels: bool, elf: dict[str, Any]) -> dict[str, Any]:
    return target_block(spec.name, "tvm", spec.arch, "cuda" if spec.gpu else "cpu", kernels,
                        {"tvm": json.loads(str(spec.tvm_target())), "linker": spec.cxx, "elf": elf})


def _run_built(folder: Path, target: dict[str, Any], input_shape: tuple[int, ...], x: Any) -> list[Any]:
    from ...runtime.runner import TVMRunner
    # The runner reads only these two entries: the manifest is written once fidelity is known.
    runner = TVMRunner(folder, {"target": target, "inputs": [{"shape": list(input_shape)}]}, threads=1)
    y = runner.run(x)
    return y if isinstance(y, list) else [y]


def export_tvm(graph_or_ticket: "Graph | Ticket | Source", target: Any, out: str | Path,
               input_shape: tuple[int, ...] | None = None, plan: Any = None, tolerance: float = 1e-4,
               force: bool = False, cost_table: Any = None) -> Path:
    """Export for TVM `target` into folder `out` (atomically); returns `out`.

    plan: None (default rule, see default_formats), a st_deploy.plan.Plan, a planner mode
    ("auto", "dense", "sparse") or {layer name: "dense" | "csr" | "bsr4x1"}. cost_table (a path
    or CostTable) prices a mode's layers instead of the target's own table (see _formats).
    """
    out = Path(out)
    if not tolerance > 0:
        raise DeployError(f"tolerance must be > 0, got {tolerance}")
    spec = resolve_target(target)
    src = resolve(graph_or_ticket, input_shape)
    graph, reference, source, shape = src.graph, src.reference, src.provenance, src.input_shape
    shapes = infer_shapes(graph, shape)
    formats, plan_entry = _formats(graph, plan, shapes, spec, cost_table)
    _check_formats(graph, formats)
    lowered = to_relax(planned(graph, formats), shapes, kernels=spec.kernels, prefix=spec.kernel_prefix)
    x = seeded_input(shape)
    ref = reference_outputs(reference, x)

    with atomic_dir(out, force=force) as tmp:
        target = _target(spec, spec.kernels, _build(lowered.mod, spec, tmp))
        if spec.host_runnable:
            got, how = _run_built(tmp, target, shapes[graph.inputs[0]], x), "this artifact, on this machine"
        else:
            got, how = _host_proxy(graph, shapes, formats, spec.kernels, x), (
                f"a host ({resolve_target('llvm').arch}) build of the same Relax lowering; the {spec.name} "
                f"artifact itself was not run")
        fid = compare(ref, got)
        if not fid["rel"] <= tolerance:
            raise FidelityError(f"{out}: TVM artifact for {spec.name} differs from the reference beyond tolerance "
                                f"{tolerance:g}: rel {fid['rel']:.3g} (max abs {fid['max_abs']:.3g}); nothing written")
        fidelity = {"input": input_description(shape), "tolerance": tolerance,
                    "measured_on": how, "files": {LIBRARY: {k: float(f"{v:.3g}") for k, v in fid.items()}}}
        files = {LIBRARY: {"sha256": hashlib.sha256((tmp / LIBRARY).read_bytes()).hexdigest(), "role": "library"}}
        write_manifest(tmp, _manifest(graph, shapes, spec, target, source, formats, plan_entry, lowered.layers,
                                      fidelity, files, src.compaction))
        # atomic_dir's temporary folder is private (mkdtemp: 0700); an artifact is meant to be shared.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
    return out


def _host_proxy(graph: Graph, shapes: dict, formats: dict[str, str], kernels: bool, x: Any) -> list[Any]:
    """Outputs of a host build of the same lowering (kernels or Relax ops alike): the check a
    cross-compiled artifact can get here."""
    host = resolve_target("llvm")
    lowered = to_relax(planned(graph, formats), shapes, kernels=kernels)
    with tempfile.TemporaryDirectory(prefix="st-tvm-proxy-") as d:
        folder = Path(d)
        target = _target(host, kernels, _build(lowered.mod, host, folder))
        return _run_built(folder, target, shapes[graph.inputs[0]], x)


def _manifest(graph: Graph, shapes: dict, spec: TargetSpec, target: dict[str, Any], source: dict[str, str],
              formats: dict[str, str], plan_entry: dict[str, Any], layers: dict[str, dict[str, Any]],
              fidelity: dict[str, Any], files: dict[str, Any], compaction: dict[str, Any]) -> dict[str, Any]:
    import tvm
    import tvm_ffi

    from ...version import __version__

    per_layer = []
    planned_layers = {lp["name"]: lp for lp in plan_entry.get("layers", [])}  # a Plan's: predictions and reasons
    for n in graph.nodes:
        if is_layer(n):
            info = layers.get(n.name, {})
            chosen = planned_layers.get(n.name, {})
            why = {k: chosen[k] for k in ("predicted_us", "reason") if k in chosen}
            per_layer.append({"name": n.name, "kind": layer_kind(n), "format": formats.get(n.name, "dense"),
                              "sparsity": round(sparsity(n.params["weight"], n.params.get("mask")), 4), **why,
                              "runs_as": info.get("run_format", formats.get(n.name, "dense")),
                              "impl": info.get("impl", ""),
                              **{k: info[k] for k in ("fused", "note", "call") if k in info}})
    not_sparse = [lp["name"] for lp in per_layer if lp["format"] != "dense" and lp["runs_as"] == "dense"]
    return build_manifest(
        target=target,
        source={k: source.get(k, "") for k in ("name", "path", "sha256")},
        inputs=tensors(graph.inputs, shapes, free_batch=False),
        outputs=tensors(graph.outputs, shapes, free_batch=False),
        files=files,
        compaction=compaction,
        plan={**plan_entry, "layers": per_layer},
        channel_padding={"block": None, "rule": "none: channel padding is for ORT's NCHWc blocks (ONNX target)",
                         "tensors": []},
        opaque_ops=opaque_ops(graph),
        fidelity=fidelity,
        warnings=([f"{len(not_sparse)} layer(s) planned sparse run dense: no {spec.name} kernel takes them "
                      f"({', '.join(not_sparse[:5])}{', ...' if len(not_sparse) > 5 else ''}; see their notes)"]
                  if not_sparse else []),
        load="tvm.runtime.load_module('model.so'); relax.VirtualMachine(lib, device)['main'](x), or st_deploy.load(DIR)",
        notes=([f"our CUDA kernels are machine code for {spec.tvm.get('arch')} (plus PTX that newer GPUs JIT); "
                   f"TVM's kernels for the other ops are stored as CUDA source, compiled for the GPU present when "
                   f"model.so is first run (st_deploy.load does it with NVRTC from cuda-bindings, or nvcc with "
                   f"TVM_CUDA_COMPILE_MODE=nvcc; plain TVM needs tvm.support.nvcc imported)"]
               if spec.gpu else []),
        versions={"st_deploy": __version__, "tvm": tvm.__version__, "tvm_ffi": tvm_ffi.__version__,
                  "python": platform.python_version()},
    )
