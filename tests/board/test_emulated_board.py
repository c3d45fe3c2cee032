"""An emulated aarch64 board end to end: `st-deploy board` under qemu-user registers with a
tracker on 127.0.0.1, a shared sample exported for aarch64 is benched through the tracker on one
board and on a fleet of two, and the records describe the board and check its outputs.

The board's root filesystem is built on first use (cached under $ST_DEPLOY_BOARDS, else
~/.cache/st-deploy/boards). Where it cannot be built the tests skip with the reason, except in CI
($CI set, as .ci/run does), where they fail with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from st_deploy import DeployError
from st_deploy.board.server import emulation_evidence
from tests.conftest import SAMPLES, import_test_extra
from tests.rpc_processes import free_port, start_tracker

ROOT = Path(__file__).resolve().parents[2]
KEY = "st-test-emu"


def test_emulation_evidence_needs_evidence():
    real_arm = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n"
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx512f\n"
    env = {k: v for k, v in os.environ.items() if k != "ST_DEPLOY_BOARD_EMULATOR"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "environ", env)
        assert emulation_evidence("aarch64", real_arm, "Name:\tpython3\n") == []
        assert emulation_evidence("x86_64", x86, "Name:\tpython3\n") == []
        assert any("another architecture" in e for e in emulation_evidence("aarch64", x86, "Name:\tpython3\n"))
        assert any("qemu-aarch64" in e for e in emulation_evidence("aarch64", real_arm, "Name:\tqemu-aarch64\n"))



def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "st_deploy", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=timeout)


@pytest.fixture(scope="module")
def board_root() -> Path:
    r = _cli("board", "--emulate", "aarch64", "--build-only")
    if r.returncode != 0:
        why = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        if os.environ.get("CI"):
            pytest.fail(f"the emulated board's root filesystem could not be built: {why[0]}; "
                        f"CI={os.environ['CI']!r} requires it")
        pytest.skip(f"the emulated board's root filesystem could not be built here: {why[0]}")
    return Path(r.stdout.strip().splitlines()[-1])


def _board_processes(port: int) -> list[int]:
    """Processes of the board serving on `port` (the qemu-run server and its forked workers)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(c.endswith(b"board/server.py") for c in cmd) and str(port).encode() in cmd:
            out.append(int(d.name))
    return out


def _stop(proc: subprocess.Popen, port: int) -> None:
    """SIGTERM to st-deploy board (it stops its board); whatever is left of a failed test is killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    for pid in _board_processes(port):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _start_board(root: Path, tracker_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "st_deploy", "board", "--emulate", "aarch64", "--rootfs", str(root),
                             "--port", str(port), "--tracker", f"127.0.0.1:{tracker_port}", "--key", KEY],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    return proc, port


def _wait_ready(proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    lines = []
    assert proc.stdout is not None
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"st-deploy board exited with {proc.wait()}: {' | '.join(lines[-5:])}")
        lines.append(line.strip())
        if "board ready" in line:
            return
    raise AssertionError(f"st-deploy board not ready after {seconds} s: {' | '.join(lines[-5:])}")


@pytest.fixture(scope="module")
def fleet(board_root):
    """A tracker on 127.0.0.1 and two emulated boards registered under KEY."""
    import_test_extra("tornado")  # the TVM RPC tracker
    tracker_port = free_port()
    tracker = start_tracker(tracker_port)
    boards = []
    try:
        boards = [_start_board(board_root, tracker_port) for _ in range(2)]
        for proc, _ in boards:
            _wait_ready(proc)
        yield f"127.0.0.1:{tracker_port}", boards
    finally:
        for proc, port in boards:
            _stop(proc, port)
        os.killpg(tracker.pid, signal.SIGKILL)
        tracker.wait(30)


@pytest.fixture(scope="module")
def aarch64_artifact(request, tmp_path_factory) -> Path:
    """A shared SuperTickets sample exported for aarch64 where the checkout has the samples, else the
    built-in example ticket (a fresh clone's CI has no ../shared), both at 64x64."""
    ticket = (SAMPLES / "cls_mini_searched.state_dict" if SAMPLES is not None
              else request.getfixturevalue("example_ticket"))
    out = tmp_path_factory.mktemp("board") / "aarch64"
    r = _cli("export", str(ticket), "--target", "aarch64", "-o", str(out), "--input-shape", "1,3,64,64")
    assert r.returncode == 0, r.stderr
    return out


def _source(artifact: Path) -> dict:
    return json.loads((artifact / "manifest.json").read_text())["source"]


@pytest.mark.slow
def test_bench_through_tracker_describes_the_board(fleet, aarch64_artifact, tmp_path):
    tracker, _ = fleet
    out = tmp_path / "board.json"
    r = _cli("bench", str(aarch64_artifact), "--tracker", tracker, "--key", KEY, "--repeat", "3",
             "--threads", "1", "--json", str(out), "--plot", str(tmp_path / "p.png"), "--csv", str(tmp_path / "b.csv"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"fidelity against the ticket {_source(aarch64_artifact)['name']}" in r.stdout
    assert "not written" in r.stdout and not (tmp_path / "p.png").exists()  # emulated times are not plotted
    assert "tvm-remote (emulated board)" in (tmp_path / "b.csv").read_text()
    result = json.loads(out.read_text())
    (rec,) = result["records"]
    dev = rec["device"]
    assert dev["machine"] == "aarch64" and rec["emulated"] is True and dev["emulated"] is True
    assert any("qemu-aarch64" in e for e in dev["emulation"])
    assert dev["tvm"] == metadata.version("apache-tvm") and dev["os"].startswith("Debian GNU/Linux 12")
    assert dev["cores"] >= 1 and dev["python"].startswith("3.11")
    assert rec["threads"] == 1 and rec["tvm_pool_threads"] == 1 and rec["n"] == 3 and rec["kernel_pool"] == "tvm"
    assert rec["failed"] is False and rec["fidelity_max_rel"] <= rec["tolerance"] == 1e-4
    assert rec["speedup"] is None and rec["baseline"] is None
    # The machine block is the board's; the host that drove it is beside it.
    assert result["machine"]["machine"] == "aarch64" and "EMULATED" in result["machine"]["cpu"]
    assert result["machine"]["host"]["machine"] == os.uname().machine


@pytest.mark.slow
def test_fleet_spreads_repeats_and_reports_per_board(fleet, aarch64_artifact, tmp_path):
    tracker, boards = fleet
    out = tmp_path / "fleet.json"
    r = _cli("bench", str(aarch64_artifact), "--tracker", tracker, "--key", KEY, "--repeat", "5",
             "--boards", "2", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert result["repeats_per_board"] == [3, 2]
    assert sorted(rec["n"] for rec in result["records"]) == [2, 3]
    served = {rec["board"] for rec in result["records"]}
    assert served == {f"127.0.0.1:{port}" for _, port in boards}
    r = _cli("bench", str(aarch64_artifact), "--tracker", tracker, "--key", KEY, "--repeat", "5", "--boards", "3")
    assert r.returncode == 2 and "has 2 free board(s)" in r.stderr


@pytest.mark.slow
def test_tune_refuses_an_emulated_board(fleet):
    tracker, _ = fleet
    r = _cli("tune", "--target", "aarch64", "--tracker", tracker, "--key", KEY, timeout=300)
    assert r.returncode == 2 and "is emulated" in r.stderr and "tune on a real board" in r.stderr


@pytest.mark.slow
def test_board_outputs_beyond_tolerance_fail(fleet, aarch64_artifact):
    from st_deploy.bench.rpc import connect, remote_bench, remote_reference
    tracker, _ = fleet
    from st_deploy import load_ticket
    ticket_ref = remote_reference(load_ticket(Path(_source(aarch64_artifact)["path"])), (1, 3, 64, 64))
    session = connect(tracker=tracker, key=KEY)
    wrong = [r + 1.0 for r in ticket_ref]
    rec = remote_bench(aarch64_artifact, session, repeat=1, reference=wrong)
    assert rec["failed"] is True and "differ from the ticket" in rec["failure"]
    rec = remote_bench(aarch64_artifact, session, repeat=1, reference=ticket_ref, threads=2)
    assert rec["failed"] is False and rec["tvm_pool_threads"] == 2


@pytest.mark.slow
def test_sigterm_stops_the_board_and_its_children(board_root):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "st_deploy", "board", "--emulate", "aarch64", "--rootfs",
                             str(board_root), "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_ready(proc)
        from st_deploy.bench.rpc import connect
        session = connect(rpc=f"127.0.0.1:{port}")  # a session forks a worker on the board
        assert json.loads(session.get_function("st_deploy.board_facts")())["machine"] == "aarch64"
        assert len(_board_processes(port)) >= 2
        proc.send_signal(signal.SIGTERM)  # to st-deploy alone, not its group
        assert proc.wait(60) == 0
        deadline = time.time() + 10
        while _board_processes(port) and time.time() < deadline:
            time.sleep(0.2)
        assert _board_processes(port) == []
    finally:
        _stop(proc, port)


def test_board_options_are_checked():
    r = _cli("board", "--emulate", "aarch64", "--tracker", "127.0.0.1:1", timeout=120)
    assert r.returncode == 2 and "--tracker needs --key" in r.stderr
    r = _cli("board", "--emulate", "aarch64", "--rootfs", "/nonexistent-root", "--port", "1", timeout=120)
    assert r.returncode == 2 and "no usr/bin/python3.11" in r.stderr
    with pytest.raises(DeployError, match="needs --tracker"):
        from st_deploy.bench.fleet import sessions
        sessions(None, None, None, 2)
