"""ONNX Runtime sessions for exported models, with the st.sparse custom-op library registered.

`ort_library_path()` is the library to pass to SessionOptions.register_custom_ops_library (like
onnxruntime-extensions' get_library_path); `ort_session()` does that and sets the threading that
keeps ORT's pool and the sparse kernels' pool from fighting over cores.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import DeployError

LIBRARY_NAME = "libst_deploy_ort.so"
# Points at a development build (e.g. build/kernels/ort/libst_deploy_ort.so) instead of the installed one.
ENV_LIB = "ST_DEPLOY_ORT_LIB"
SPARSE_DOMAIN = "st.sparse"
OPT_LEVELS = ("disable", "basic", "extended", "all")
# Layout passes (level "all") wrap custom ops in NCHWc reorders; "extended" keeps conv+activation
# fusion without them. With bias, activation and residual fused into SparseConv and nearly every
# conv sparse, the levels measured alike on the example (15.4-15.5 ms, 1 thread); "extended"
# is kept because it cannot put reorders between our ops whatever the plan leaves dense.
DEFAULT_SPARSE_OPT = "extended"
PARALLEL_MODES = ("kernels", "ort")
# One pool for everything: our kernels split each layer and run the pieces on ORT's intra-op pool
# (KernelContext::ParallelFor), so ORT's workers may spin without stealing a core from anyone.
# Measured on the example (benchmarks/threads.py, 2 threads, own process): 8.9 ms vs 12.9 ms at
# 1 thread; "kernels" (st_kernels' own polling pool) was within noise of it (9.6-10.5 ms).
# On an oversubscribed machine (other processes on the same cores) spinning hurts instead: there
# pass allow_spinning=False, or parallel="kernels" with ST_KERNELS_SPIN_US=0.
DEFAULT_PARALLEL = "ort"


def ort_library_path() -> Path:
    """Path of the st.sparse custom-op library: $ST_DEPLOY_ORT_LIB, else the installed copy
    (st_deploy/_lib, built by the package's CMake from kernels/ort)."""
    env = os.environ.get(ENV_LIB)
    if env:
        return Path(env)
    from .libpath import candidates
    found = candidates(LIBRARY_NAME)
    return next((p for p in found if p.is_file()), found[0])


def _uses_sparse_ops(path: Path) -> bool:
    import onnx
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError, OSError, ... for a bad file
        raise DeployError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return any(o.domain == SPARSE_DOMAIN for o in model.opset_import)


def session_options(threads: int = 1, optimization: str | None = None, sparse: bool = True,
                    allow_spinning: bool | None = None, kernel_threads: int | None = None,
                    parallel: str | None = None) -> Any:
    """SessionOptions for an exported model.

    threads: ORT intra-op threads (>= 1). With parallel="ort" also the number of output-channel
        slices each large sparse layer is cut into; with "kernels" the st_kernels pool's size
        unless kernel_threads is given.
    optimization: ORT graph optimisation level; default "all" for dense models (NCHWc layouts are
        ORT's fastest dense path) and "extended" for models with sparse ops.
    parallel: "kernels" (st_kernels' own sleeping pool runs each sparse layer) or "ort" (each
        layer is split by output channels into `threads` slices run by ORT's intra-op pool).
    allow_spinning: whether ORT's idle workers spin. Default on, except with parallel="kernels",
        where spinning ORT workers would steal the cores st_kernels' own pool needs.
    """
    import onnxruntime as ort
    if not isinstance(threads, int) or threads < 1:
        raise DeployError(f"threads must be an int >= 1, got {threads!r}")
    optimization = optimization or (DEFAULT_SPARSE_OPT if sparse else "all")
    if optimization not in OPT_LEVELS:
        raise DeployError(f"optimization {optimization!r}: choose one of {', '.join(OPT_LEVELS)}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    parallel = parallel or DEFAULT_PARALLEL
    if parallel not in PARALLEL_MODES:
        raise DeployError(f"parallel {parallel!r}: choose one of {', '.join(PARALLEL_MODES)}")
    spin = (not sparse or parallel == "ort") if allow_spinning is None else allow_spinning
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    kt = threads if kernel_threads is None else kernel_threads
    if not isinstance(kt, int) or kt < 1:
        raise DeployError(f"kernel_threads must be an int >= 1, got {kt!r}")
    so.add_session_config_entry("st.sparse.num_threads", str(kt))
    so.add_session_config_entry("st.sparse.parallel", parallel)
    so.log_severity_level = 4  # failures come back as DeployError; ORT's own log line would repeat them
    return so


def ort_session(path: str | Path, threads: int = 1, optimization: str | None = None,
                allow_spinning: bool | None = None, kernel_threads: int | None = None,
                parallel: str | None = None, profile: str | Path | None = None, device: str = "cpu") -> Any:
    """An onnxruntime.InferenceSession for an exported model (dense or sparse).

    Registers the st.sparse library when the model uses it; a missing library or a malformed
    sparse layer is a DeployError (the latter raised at session creation, before any run).
    profile: a file prefix; ORT then records per-node times (session.end_profiling()).
    device: "cpu", or "cuda" for ORT's CUDA provider (dense models only: our ops are CPU kernels).
    """
    import onnxruntime as ort
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"{path}: model file not found")
    sparse = _uses_sparse_ops(path)
    so = session_options(threads, optimization, sparse, allow_spinning, kernel_threads, parallel)
    if sparse:
        lib = ort_library_path()
        if not lib.is_file():
            raise DeployError(f"st_deploy.ort_session: {path.name} uses st.sparse ops but the custom-op library "
                              f"{lib} is missing; build the package (pip install --no-build-isolation .) or set {ENV_LIB} "
                              f"to a built {LIBRARY_NAME}")
        try:
            so.register_custom_ops_library(str(lib))
        except Exception as e:
            raise DeployError(f"st_deploy.ort_session: could not load {lib}: {str(e).splitlines()[0]}") from None
    if profile is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile)
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if sparse:
            raise DeployError(f"{path.name}: st.sparse ops are CPU kernels; on --device cuda run model.dense.onnx "
                              f"(ort-dense) or a TVM cuda artifact")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DeployError("--device cuda: this onnxruntime has no CUDAExecutionProvider (it is the CPU build, "
                              "or no GPU is visible); install onnxruntime-gpu on a machine with a GPU")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    elif device != "cpu":
        raise DeployError(f"--device {device!r}: choose cpu or cuda")
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=providers)
    except Exception as e:
        msg = " ".join(str(e).split())
        raise DeployError(f"{path}: onnxruntime rejected the model: {msg[:600]}") from None
