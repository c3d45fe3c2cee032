"""`st-deploy tune --rpc/--tracker` (board/tuning.py): which boards are refused, and the whole path on
a real board, this machine: `st-deploy rpc-server` registered with a tracker on 127.0.0.1, `tune
--tracker --key --target llvm --quick` measures the table there, and `export --target llvm --format
auto` then plans with it (and with `--cost-table FILE`) and matches the ticket. The emulated board's
refusal end to end: tests/board/test_emulated_board.py::test_tune_refuses_an_emulated_board."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from st_deploy.board.tuning import tunable_board
from st_deploy.errors import DeployError
from st_deploy.graph.kinds import sparse_formats
from st_deploy.plan.cost import board_table_path, load_table, machine_id
from st_deploy.plan.tune import QUICK_SHAPES
from tests.artifacts import check_against
from tests.conftest import import_test_extra
from tests.rpc_processes import free_port, start_cli_rpc_server, start_tracker, stop, wait_listening
from tests.test_cli_paths import run

KEY = "st-test-tune"
SHAPE = (1, 3, 32, 32)


def _facts(**kw) -> dict:
    model, _, cores = machine_id().rpartition(" x")
    return {"machine": os.uname().machine, "cpu": model, "cores": int(cores), "emulated": False, "emulation": [],
            "server": "127.0.0.1:1", **kw}


def test_refusals_say_why() -> None:
    llvm = SimpleNamespace(name="llvm", arch=os.uname().machine)
    tunable_board(_facts(), "b", llvm)  # this machine's own server: tunable
    with pytest.raises(DeployError, match=r"is emulated \(started by st-deploy board under qemu.*tune on a real board"):
        tunable_board(_facts(emulated=True, emulation=["started by st-deploy board under qemu-aarch64"]), "b", llvm)
    with pytest.raises(DeployError, match="does not say whether it is emulated .plain tvm"):
        tunable_board({"emulated": None, "note": "plain tvm.exec.rpc_server?"}, "b", llvm)
    with pytest.raises(DeployError, match="builds aarch64 code, but the board at b is x86_64"):
        tunable_board(_facts(machine="x86_64"), "b", SimpleNamespace(name="aarch64", arch="aarch64"))
    with pytest.raises(DeployError, match="llvm is this machine's CPU .*the board at b is Other CPU x64"):
        tunable_board(_facts(cpu="Other CPU", cores=64), "b", llvm)
    r = run("tune", "--target", "cuda", "--rpc", "127.0.0.1:1")
    assert r.returncode == 2 and "one of llvm, aarch64, rasp4 (CPU boards)" in r.stderr


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache folder of the test's own, sharing the compiled kernel objects (minutes to rebuild)."""
    from st_deploy.cache import cache_dir
    folder = tmp_path_factory.mktemp("cache")
    (cache_dir() / "tvm-kernels").mkdir(parents=True, exist_ok=True)
    (folder / "tvm-kernels").symlink_to(cache_dir() / "tvm-kernels")
    return folder


@pytest.fixture(scope="module")
def board():
    """A tracker on 127.0.0.1 and this machine's `st-deploy rpc-server` registered under KEY."""
    import_test_extra("tornado")  # the TVM RPC tracker
    import tvm.rpc
    tracker_port, server_port = free_port(), free_port()
    tracker = start_tracker(tracker_port)
    server = None
    try:
        wait_listening(tracker_port, tracker)
        server = start_cli_rpc_server(server_port, tracker_port, KEY)
        deadline = time.time() + 60  # the server registers with the tracker after it listens
        while tvm.rpc.connect_tracker("127.0.0.1", tracker_port).summary()["queue_info"].get(KEY, {}).get("free") != 1:
            assert time.time() < deadline, f"the rpc-server did not register with the tracker under {KEY}"
            time.sleep(0.5)
        yield f"127.0.0.1:{tracker_port}", f"127.0.0.1:{server_port}"
    finally:
        if server is not None:
            stop(server)
        stop(tracker)


@pytest.mark.slow
def test_tune_on_a_board_then_export_auto_plans_with_its_table(board, cache, small_ticket_file, tmp_path):
    tracker, server = board
    env = {"ST_DEPLOY_CACHE": str(cache)}
    r = run("tune", "--tracker", tracker, "--key", KEY, "--target", "llvm", "--quick", env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("built ") and f"at {server}" in lines[0]
    n = len(QUICK_SHAPES)
    assert [ln.split()[0] for ln in lines[1:-1]] == [f"{i}/{n}" for i in range(1, n + 1)]
    table_file = Path(lines[-1].removeprefix("wrote "))
    raw = json.loads(table_file.read_text())
    assert table_file.parent == cache and table_file.name == board_table_path("llvm", raw["board"]).name

    table = load_table(table_file)
    assert table.target == "llvm" and table.backend == "tvm" and table.machine == machine_id()
    assert raw["threads"] == 1 and raw["tvm_target"]["kind"] == "llvm"
    facts = raw["board"]
    assert facts["emulated"] is False and facts["server"] == server and facts["machine"] == os.uname().machine
    for spec in QUICK_SHAPES:
        shape = [spec["cin"], spec["cout"], spec["k"], spec["stride"], spec["hw"]]
        got = {(p["format"], p["sparsity"]) for p in table.points if p["shape"] == shape and p["kind"] == spec["kind"]}
        assert got == {("dense", 0.0)} | {(f, s) for f in sparse_formats(spec["kind"], "tvm") for s in (0.7, 0.9, 0.95)}
    assert all(p["us"] > 0 and p["work"] > 0 for p in table.points)

    # The cached board table prices the llvm export, and the manifest says so.
    art = tmp_path / "art"
    r = run("export", str(small_ticket_file), "--target", "llvm", "--format", "auto", "--input-shape", "1,3,32,32",
            "-o", str(art), env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"cost table {table_file}: measured with TVM" in r.stdout
    manifest = json.loads((art / "manifest.json").read_text())
    plan = manifest["plan"]
    assert plan["target"] == "llvm" and plan["cost_table"] == str(table_file)
    assert f"on board {machine_id()} at {server}" in plan["cost_table_note"]
    assert all(lp["reason"].startswith(("fastest predicted", "no sparse kernel")) for lp in plan["layers"])
    assert {lp["format"] for lp in plan["layers"]} <= {"dense", "csr", "bsr4x1"}
    assert manifest["fidelity"]["files"]["model.so"]["rel"] <= 1e-4
    from st_deploy import load_ticket
    assert check_against(art, load_ticket(small_ticket_file).module.eval(), SHAPE) <= 1e-4

    # --cost-table FILE, from a cache that holds no board table.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "tvm-kernels").symlink_to(cache / "tvm-kernels")
    r = run("export", str(small_ticket_file), "--target", "llvm", "--input-shape", "1,3,32,32", "-o", str(tmp_path / "given"),
            "--cost-table", str(table_file), "--json", env={"ST_DEPLOY_CACHE": str(bare)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    given = json.loads(r.stdout)["plan"]
    assert given["cost_table"] == str(table_file) and "measured with TVM" in given["cost_table_note"]
    assert [lp["format"] for lp in given["layers"]] == [lp["format"] for lp in plan["layers"]]
