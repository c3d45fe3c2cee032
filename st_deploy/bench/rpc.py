"""Edge boards through TVM's RPC: a server on the board (alone or registered with a tracker),
the host uploads the cross-compiled model.so and times it there with time_evaluator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifact import read_manifest
from ..errors import DeployError
from ..graph.fidelity import compare, reference_outputs, seeded_input
from .core import artifact_input_shape
from .stats import summarize


def _host_port(value: str, flag: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DeployError(f"{flag} {value!r}: expected HOST:PORT")
    return host, int(port)


def connect(rpc: str | None = None, tracker: str | None = None, key: str | None = None,
            session_timeout: int = 600):
    """An RPC session to a board: directly (--rpc HOST:PORT) or via a tracker (--tracker, --key)."""
    from tvm import rpc as tvm_rpc
    try:
        if rpc:
            host, port = _host_port(rpc, "--rpc")
            # A server registered with a tracker only accepts clients that name its key.
            return tvm_rpc.connect(host, port, key=key or "", session_timeout=session_timeout)
        if tracker:
            if not key:
                raise DeployError("--tracker needs --key (the device key boards registered with)")
            host, port = _host_port(tracker, "--tracker")
            return tvm_rpc.connect_tracker(host, port).request(key, priority=1, session_timeout=session_timeout)
    except DeployError:
        raise
    except Exception as e:  # TVM raises its own error types for refused/timed-out connections
        raise DeployError(f"RPC connection failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    raise DeployError("remote benchmark needs --rpc HOST:PORT or --tracker HOST:PORT --key KEY")


def board_facts(session) -> dict[str, Any]:
    """The board's own account of itself (st_deploy/board/server.py registers the function)."""
    from ..board.server import FACTS_FUNC
    try:
        facts = session.get_function(FACTS_FUNC)
    except AttributeError:
        return {"emulated": None, "note": f"the board's RPC server has no {FACTS_FUNC} (plain tvm.exec.rpc_server?): "
                                          f"start it with `st-deploy rpc-server` to record what the board is"}
    return json.loads(facts())


def remote_reference(ticket, shape: Sequence[int], seed: int = 0) -> list[np.ndarray]:
    """The ticket's own outputs on the input remote_bench feeds the board."""
    return reference_outputs(ticket.module.eval(), seeded_input(shape, seed))


def artifact_reference(folder: Path, ticket, shape: Sequence[int]) -> tuple[list[np.ndarray] | None, str]:
    """The reference outputs for a remote run and where they came from (or why there are none)."""
    import hashlib
    if ticket is None:
        src = read_manifest(folder).get("source") or {}
        path = Path(src.get("path") or "")
        if not src.get("path") or not path.is_file():
            return None, (f"fidelity not checked: {folder} names no ticket file found here ({src.get('path')}); "
                          f"bench the ticket file itself to compare the board's outputs with it")
        if hashlib.sha256(path.read_bytes()).hexdigest() != src.get("sha256"):
            return None, f"fidelity not checked: {path} changed since the export (sha256 differs)"
        from ..loaders import load_ticket
        ticket = load_ticket(path)
    return remote_reference(ticket, shape), f"fidelity against the ticket {ticket.name or ''}".rstrip()


def loaded_module(session, lib: Path):
    """The module on the board, uploaded and loaded once per session: uploading over a loaded
    model.so rewrites a mapped library under the board's feet (it crashed in dlsym)."""
    import hashlib
    digest = hashlib.sha256(lib.read_bytes()).hexdigest()[:16]
    loaded = session.__dict__.setdefault("_st_deploy_modules", {})
    if digest not in loaded:
        name = f"model-{digest}.so"
        session.upload(str(lib), name)
        loaded[digest] = session.load_module(name)
    return loaded[digest]


def pin_threads(session, rlib, threads: int, kernels: bool) -> str:
    """`threads` for TVM's pool on the board and, where model.so has our kernels, theirs; returns
    whose threads run the kernels ("tvm", "st_kernels", or "none" without kernels)."""
    # TVM's own pool (its generated loops) and our kernels' pool (inside model.so) both.
    session.get_function("runtime.config_threadpool")(1, threads)
    if not kernels:
        return "none"
    rlib.get_function("set_num_threads", True)(threads)
    # As the local runner does: the kernels' loops on TVM's pool, so two pools never compete.
    try:
        return "tvm" if rlib.get_function("use_host_pool", True)(True) else "st_kernels"
    except AttributeError:  # a model.so built before the kernels could use TVM's pool
        return "st_kernels"


def _outputs(out: Any) -> list[np.ndarray]:
    if hasattr(out, "numpy"):
        return [out.numpy()]
    return [o.numpy() for o in out]  # a tuple of outputs comes back as a remote array of tensors


def remote_bench(artifact: Path, session, input_shape: Sequence[int] | None = None, repeat: int = 50,
                 number: int = 1, reference: list[np.ndarray] | np.ndarray | None = None, seed: int = 0,
                 threads: int | None = None, tolerance: float | None = None) -> dict[str, Any]:
    """Upload DIR/model.so, run `main` on the board, return summary statistics, the board's facts
    and, with a reference, fidelity: the board's outputs against it (failed beyond `tolerance`,
    default the artifact's own export tolerance)."""
    import tvm
    from tvm import relax

    artifact = Path(artifact)
    lib = artifact / "model.so"
    if not lib.is_file():
        raise DeployError(f"{artifact}: no model.so; remote benchmarks need a TVM artifact "
                          f"(st-deploy export --target aarch64|rasp4|llvm)")
    manifest = read_manifest(artifact)
    shape = list(input_shape or artifact_input_shape(artifact))
    facts = board_facts(session)
    rlib = loaded_module(session, lib)
    kernel_pool = "none"
    if threads is not None:
        kernel_pool = pin_threads(session, rlib, threads, bool((manifest.get("target") or {}).get("kernels")))
    pool_threads = int(session.get_function("runtime.NumThreads")())
    dev = session.cpu()
    vm = relax.VirtualMachine(rlib, dev)
    x = seeded_input(shape, seed)
    x_remote = tvm.runtime.tensor(x, dev)
    got = _outputs(vm["main"](x_remote))
    timer = vm.time_evaluator("main", dev, number=number, repeat=repeat)
    result = timer(x_remote)
    stats = summarize(list(result.results), shape[0])
    record: dict[str, Any] = {"runtime": "tvm-remote", "threads": threads if threads is not None else pool_threads,
                              "tvm_pool_threads": pool_threads, "kernel_pool": kernel_pool, "batch": shape[0], **stats,
                              "target": manifest.get("target"), "device": facts, "emulated": facts.get("emulated"),
                              "board": facts.get("server"), "fidelity_max_abs": None, "fidelity_max_rel": None,
                              "failed": None}
    if reference is not None:
        refs = [reference] if isinstance(reference, np.ndarray) else list(reference)
        fid = compare([np.asarray(r, dtype=np.float32) for r in refs], got)
        tol = tolerance if tolerance is not None else float((manifest.get("fidelity") or {}).get("tolerance", 1e-4))
        record.update(fidelity_max_abs=fid["max_abs"], fidelity_max_rel=fid["rel"], tolerance=tol,
                      failed=not fid["rel"] <= tol)
        if record["failed"]:
            record["failure"] = (f"the board's outputs differ from the ticket's: rel {fid['rel']:.3g} "
                                 f"(max abs {fid['max_abs']:.3g}) > tolerance {tol:g}")
    return record


def server_command(host: str, port: int, tracker: str | None = None, key: str | None = None) -> list[str]:
    """TVM's RPC server with st-deploy's board facts (the script needs only TVM: copy it to a board)."""
    from ..board.emulate import SERVER_SCRIPT
    # TVM searches [port, port-end) for a free port; pin it so the board is where we said.
    cmd = [sys.executable, str(SERVER_SCRIPT), "--host", host, "--port", str(port), "--port-end", str(port + 1)]
    if tracker:
        cmd += ["--tracker", tracker, "--key", key or "st-deploy"]
    return cmd


def run_server(host: str, port: int, tracker: str | None = None, key: str | None = None) -> int:
    """The board side: TVM's RPC server in the foreground (Ctrl-C stops it)."""
    try:
        return subprocess.call(server_command(host, port, tracker, key), env=dict(os.environ))
    except KeyboardInterrupt:
        return 130
