"""The CLI paths no other test runs (#24): the README's main command as written (example -> pack ->
export llvm), the artifact it makes run and match its ticket; `tune --quick`; `rpc-server` and
`bench --rpc` / `--tracker --key` on 127.0.0.1; and the error exits (exit 2 with one line for our
checks, 1 for a fidelity failure, 3 for an internal error)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.rpc_processes import free_port, start_cli_rpc_server, start_tracker, stop, wait_listening

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_STATE_DICT = "example/supertickets_imagenet_g0.9.state_dict"


def run(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "st_deploy", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})


def one_line_error(r: subprocess.CompletedProcess, pattern: str, code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def readme_main_command() -> str:
    """The README's one-line quick start after `pip install . &&` (the package is installed here)."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"^pip install \. && (st-deploy example .*)$", text, re.M)
    assert m, "README.md: the quick-start line `pip install . && st-deploy example ...` is gone"
    return m.group(1)


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory) -> Path:
    """Runs the README's main command verbatim (through `st-deploy` on PATH) in a fresh folder."""
    cwd = tmp_path_factory.mktemp("readme")
    cmd = readme_main_command()
    assert cmd.count("&&") == 2 and "-o artifact" in cmd, cmd
    bindir = str(Path(sys.executable).parent)  # the st-deploy script next to this interpreter
    r = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=1800,
                       env={**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")})
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return cwd


@pytest.mark.slow
def test_readme_main_command_makes_an_artifact_that_matches_the_ticket(readme_run):
    from st_deploy import load, load_ticket
    cwd = readme_run
    assert sorted(p.name for p in (cwd / "example").iterdir()) == sorted(
        f"supertickets_imagenet_g0.9{s}" for s in (".json", ".state_dict", ".yml"))
    ticket = load_ticket(cwd / "ticket.pt")
    assert ticket.name == "supertickets_imagenet_g0.9"
    manifest = json.loads((cwd / "artifact" / "manifest.json").read_text())
    assert (cwd / "artifact" / "model.so").is_file() and "model.so" in manifest["files"]
    assert manifest["source"]["sha256"] == ticket.sha256
    x = torch.randn(ticket.default_input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = ticket.module(x).numpy()
    got = np.asarray(load(cwd / "artifact", threads=1).run(x.numpy()))
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.slow
def test_tune_quick_writes_a_cost_table(tmp_path):
    from st_deploy.plan.cost import load_table
    out = tmp_path / "table.json"
    r = run("tune", "--quick", "-o", str(out), env={"ST_DEPLOY_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == f"wrote {out}"
    table = load_table(out)
    assert table.target == "llvm" and table.points
    formats = {p["format"] for p in table.points}
    assert "dense" in formats and formats - {"dense"}, formats
    assert all(p["us"] > 0 and p["work"] > 0 for p in table.points)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.json"))


def test_tune_other_target_is_a_one_line_error(tmp_path):
    one_line_error(run("tune", "--target", "aarch64", "--quick", "-o", str(tmp_path / "t.json")),
                   r"only 'llvm'.*can be measured")
    assert not (tmp_path / "t.json").exists()


# -- rpc-server and bench --rpc / --tracker on this machine ----------------------------------------





def _check_remote_result(path: Path, remote: str, repeat: int) -> None:
    result = json.loads(path.read_text())
    (rec,) = result["records"]
    assert rec["n"] == repeat and 0 < rec["min_ms"] <= rec["p50_ms"], rec
    assert result["remote"] == remote  # the machine block describes the board itself


@pytest.mark.slow
def test_bench_rpc_against_the_rpc_server_command(readme_run, tmp_path):
    port = free_port()
    server = start_cli_rpc_server(port)
    try:
        r = run("bench", str(readme_run / "artifact"), "--rpc", f"127.0.0.1:{port}", "--repeat", "3",
                "--json", str(tmp_path / "r.json"))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        _check_remote_result(tmp_path / "r.json", f"127.0.0.1:{port}", 3)
    finally:
        stop(server)


@pytest.mark.slow
def test_bench_tracker_key_with_rpc_server_registered(readme_run, tmp_path):
    tracker_port, server_port = free_port(), free_port()
    tracker = start_tracker(tracker_port)
    server = None
    try:
        wait_listening(tracker_port, tracker)
        server = start_cli_rpc_server(server_port, tracker_port, "st-cli-board")
        deadline = time.time() + 120  # the server registers with the tracker after it listens
        while True:
            r = run("bench", str(readme_run / "artifact"), "--tracker", f"127.0.0.1:{tracker_port}",
                    "--key", "st-cli-board", "--repeat", "2", "--json", str(tmp_path / "r.json"))
            if r.returncode == 0 or time.time() > deadline:
                break
            time.sleep(2)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        _check_remote_result(tmp_path / "r.json", f"127.0.0.1:{tracker_port} key=st-cli-board", 2)
    finally:
        if server is not None:
            stop(server)
        stop(tracker)


# -- error exits ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args,pattern", [
    (["export", "{ticket}", "--target", "onnx", "--arch", "sm_90"], r"--arch applies to --target cuda only"),
    (["export", "{ticket}", "--target", "llvm", "--triton-repo", "{tmp}/repo"], r"--triton-repo needs --target onnx"),
    (["bench", "{ticket}", "--threads", "1,x", "--no-memory"], r"--threads '1,x': expected comma-separated integers"),
    (["bench", "{ticket}", "--batch", "0", "--no-memory"], r"--batch '0': expected positive integers"),
    (["inspect", "{ticket}", "--input-shape", "1,3,x,64"], r"--input-shape"),
])
def test_bad_arguments_exit_2_with_one_line(small_ticket_file, tmp_path, args, pattern):
    ticket = str(small_ticket_file)
    r = run(*[a.format(ticket=ticket, tmp=tmp_path) for a in args])
    one_line_error(r, pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_fidelity_failure_exits_1_and_writes_nothing(small_ticket_file, ort_lib, tmp_path):
    r = run("export", str(small_ticket_file), "--target", "onnx", "-o", str(tmp_path / "art"), "--tolerance", "1e-30")
    one_line_error(r, r"^st-deploy: error: .*art: exported model differs from the ticket beyond tolerance 1e-30",
                   code=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


_BOOM = """
import sys
import st_deploy.cli as c

@c.cli.command("boom")
def boom():
    raise RuntimeError("a bug of ours " + "x" * 1000)

c.main(sys.argv[1:])
"""


def test_internal_error_exits_3_with_one_line_and_debug_shows_the_traceback():
    r = subprocess.run([sys.executable, "-c", _BOOM, "boom"], capture_output=True, text=True, timeout=300)
    line = one_line_error(r, r"^st-deploy: internal error: RuntimeError: a bug of ours x+ \(rerun with --debug "
                             r"for the traceback\)$", code=3)
    assert len(line) < 400  # the message is cut, not dumped
    r = subprocess.run([sys.executable, "-c", _BOOM, "--debug", "boom"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" in r.stderr and "RuntimeError: a bug of ours" in r.stderr
