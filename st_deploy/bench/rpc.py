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
from .core import artifact_input_shape, seeded_input
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


def remote_bench(artifact: Path, session, input_shape: Sequence[int] | None = None, repeat: int = 50,
                 number: int = 1, reference: np.ndarray | None = None, seed: int = 0) -> dict[str, Any]:
    """Upload DIR/model.so, run `main` on the board, return summary statistics (and fidelity)."""
    import tvm
    from tvm import relax

    artifact = Path(artifact)
    lib = artifact / "model.so"
    if not lib.is_file():
        raise DeployError(f"{artifact}: no model.so; remote benchmarks need a TVM artifact "
                          f"(st-deploy export --target aarch64|rasp4|llvm)")
    manifest = read_manifest(artifact)
    shape = list(input_shape or artifact_input_shape(artifact))
    session.upload(str(lib))
    rlib = session.load_module("model.so")
    dev = session.cpu()
    vm = relax.VirtualMachine(rlib, dev)
    x = seeded_input(shape, seed)
    x_remote = tvm.runtime.tensor(x, dev)
    out = vm["main"](x_remote)
    y = out.numpy() if hasattr(out, "numpy") else out[0].numpy()  # one output, or a tuple of them
    timer = vm.time_evaluator("main", dev, number=number, repeat=repeat)
    result = timer(x_remote)
    stats = summarize(list(result.results), shape[0])
    record: dict[str, Any] = {"runtime": "tvm-remote", "threads": None, "batch": shape[0], **stats,
                              "target": manifest.get("target")}
    if reference is not None:
        err = float(np.abs(y.astype(np.float64) - reference).max())
        record["fidelity_max_abs"] = err
        record["fidelity_max_rel"] = err / max(float(np.abs(reference).max()), 1e-30)
    return record


def server_command(host: str, port: int, tracker: str | None = None, key: str | None = None) -> list[str]:
    # TVM searches [port, port-end) for a free port; pin it so the board is where we said.
    cmd = [sys.executable, "-m", "tvm.exec.rpc_server", "--host", host, "--port", str(port),
           "--port-end", str(port + 1)]
    if tracker:
        cmd += ["--tracker", tracker, "--key", key or "st-deploy"]
    return cmd


def run_server(host: str, port: int, tracker: str | None = None, key: str | None = None) -> int:
    """The board side: TVM's RPC server in the foreground (Ctrl-C stops it)."""
    try:
        return subprocess.call(server_command(host, port, tracker, key), env=dict(os.environ))
    except KeyboardInterrupt:
        return 130
