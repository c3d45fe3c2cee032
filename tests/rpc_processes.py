"""The processes the RPC tests start on 127.0.0.1 (TVM trackers, rpc-servers, boards), and how they
are stopped: each in a session of its own, killed with its whole process group (TVM's server forks a
worker that outlives its parent)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_tracker(port: int) -> subprocess.Popen:
    """TVM's RPC tracker on 127.0.0.1:port (needs tornado, in the test extra)."""
    return spawn([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                  "--port", str(port), "--port-end", str(port + 1)])


def start_cli_rpc_server(port: int, tracker_port: int | None = None, key: str | None = None) -> subprocess.Popen:
    """`st-deploy rpc-server` on 127.0.0.1:port (registered with the tracker under key if given),
    listening when this returns."""
    cmd = [sys.executable, "-m", "st_deploy", "rpc-server", "--host", "127.0.0.1", "--port", str(port)]
    if tracker_port is not None:
        cmd += ["--tracker", f"127.0.0.1:{tracker_port}", "--key", key or "st-deploy"]
    proc = spawn(cmd)
    try:
        wait_listening(port, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def wait_listening(port: int, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert proc.poll() is None, f"exited early with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise TimeoutError(f"nothing listens on {port} after {seconds}s")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
