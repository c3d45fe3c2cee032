"""An emulated aarch64 board: the board's Python under qemu-user runs st-deploy's board server.

`qemu-aarch64 -L ROOT ROOT/usr/bin/python3.11 server.py ...` needs no privileges (no chroot, no
binfmt_misc). The board runs in a process group of its own, so stopping it stops every process
it forked (TVM's session workers outlive a SIGTERM to their parent).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import DeployError
from .rootfs import board_python, check_rootfs
from .server import EMULATOR_ENV

SERVER_SCRIPT = Path(__file__).with_name("server.py")
READY_PREFIX = "st-deploy board server listening on "


def qemu_version() -> str:
    exe = shutil.which("qemu-aarch64")
    if exe is None:
        raise DeployError("the emulated board needs qemu-aarch64 (apt-get install qemu-user)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout.split("\n", 1)[0]
    return out.replace("qemu-aarch64 version", "qemu-aarch64").strip() or "qemu-aarch64"


def board_command(root: Path, host: str, port: int, tracker: str | None = None, key: str | None = None,
                  port_end: int | None = None) -> list[str]:
    cmd = ["qemu-aarch64", "-L", str(root), str(board_python(root)), str(SERVER_SCRIPT),
           "--host", host, "--port", str(port), "--port-end", str(port_end or port + 1)]
    if tracker:
        cmd += ["--tracker", tracker, "--key", key or "st-deploy"]
    return cmd


def board_env(emulator: str) -> dict[str, str]:
    # The host's Python settings must not leak into the board's interpreter.
    # Not the host's TVM_NUM_THREADS either (a local runner sets it): it would cap the board's pool.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTHON") and k not in ("LD_LIBRARY_PATH", "TVM_NUM_THREADS")}
    env.update({"PYTHONNOUSERSITE": "1", "TVM_USE_RUNTIME_LIB": "1", EMULATOR_ENV: emulator})
    return env


class EmulatedBoard:
    """A started board; `address` is where its RPC server listens once `wait_ready` returned."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 9090, tracker: str | None = None,
                 key: str | None = None, port_end: int | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        check_rootfs(root)
        self.tracker, self.key, self.echo = tracker, key, echo
        self.address: str | None = None
        self._lines: list[str] = []
        self.proc = subprocess.Popen(board_command(root, host, port, tracker, key, port_end),
                                     env=board_env(qemu_version()), start_new_session=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip()
            self._lines.append(line)
            if line.startswith(READY_PREFIX) and self.address is None:
                self.address = line[len(READY_PREFIX):].strip()
                self._listening.set()
            if self.echo:
                self.echo(line)

    def wait_ready(self, seconds: float = 180) -> str:
        """Block until the server listens (and, with a tracker, has registered); its HOST:PORT."""
        deadline = time.monotonic() + seconds
        while not self._listening.wait(0.5):
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise DeployError(f"the emulated board exited with {self.proc.returncode}: {self._tail()}")
            if time.monotonic() > deadline:
                raise DeployError(f"the emulated board did not listen within {seconds:.0f} s: {self._tail()}")
        assert self.address is not None
        if self.tracker:
            self._wait_registered(deadline)
        return self.address

    def _wait_registered(self, deadline: float) -> None:
        """The server registers with its tracker after it listens; requests before that would queue."""
        from tvm import rpc as tvm_rpc
        host, _, port = self.tracker.rpartition(":")
        want = int(self.address.rpartition(":")[2])
        while True:
            try:
                info = tvm_rpc.connect_tracker(host, int(port)).summary().get("server_info", [])
            except Exception as e:  # TVM raises its own errors for a tracker that is not up
                info, why = [], f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            else:
                why = "not registered yet"
                if any(s.get("key") == f"server:{self.key}" and s.get("addr", [None, None])[1] == want for s in info):
                    return
            if self.proc.poll() is not None:
                raise DeployError(f"the emulated board exited with {self.proc.returncode}: {self._tail()}")
            if time.monotonic() > deadline:
                raise DeployError(f"the emulated board did not register with tracker {self.tracker} under key "
                                  f"{self.key!r} ({why})")
            time.sleep(0.5)

    def _tail(self) -> str:
        return " | ".join(line for line in self._lines[-4:] if line) or "no output"

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the board's whole process group, SIGKILL to what is left after `grace` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(self.proc.pid):
                break
        if self.proc.poll() is None:
            self.proc.wait(timeout=30)

    def __enter__(self) -> "EmulatedBoard":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_board(root: Path, host: str, port: int, tracker: str | None, key: str | None,
              echo: Callable[[str], None]) -> int:
    """`st-deploy board`: start, report readiness, serve until SIGINT/SIGTERM, stop with all children."""
    stop_now = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop_now.set()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    board = EmulatedBoard(root, host, port, tracker, key, echo=echo)
    try:
        address = board.wait_ready()
        echo(f"emulated aarch64 board ready at {address}"
             + (f", registered with {tracker} under key {key!r}" if tracker else "")
             + " (Ctrl-C or SIGTERM stops it)")
        while not stop_now.is_set() and board.proc.poll() is None:
            stop_now.wait(0.5)
        if board.proc.poll() is not None and not stop_now.is_set():
            echo(f"the emulated board exited with {board.proc.returncode}")
            return 1
        return 0
    finally:
        board.stop()
        for s, h in previous.items():
            signal.signal(s, h)
