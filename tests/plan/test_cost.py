"""plan.cost: which table prices a target. A board's TVM table (st-deploy tune --rpc/--tracker) for
its target, chosen by file name among several and named in the plan; the llvm target takes only a
board table measured on this machine's CPU; without one a TVM export prices with this machine's
table for llvm and says so; the ONNX backend never takes a TVM table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from st_deploy.errors import DeployError
from st_deploy.plan import plan
from st_deploy.plan.cost import KINDS, board_machine, board_table_path, default_table, load_table, machine_id
from st_deploy.plan.cost import tvm_table
from tests.graphs import every_op_graph

PI4 = {"machine": "aarch64", "cpu": "ARM implementer 0x41 part 0xd08", "cores": 4,
       "board_model": "Raspberry Pi 4 Model B Rev 1.4", "emulated": False, "server": "10.0.0.7:9090"}
ORIN = {"machine": "aarch64", "cpu": "ARM implementer 0x41 part 0xd42", "cores": 8, "board_model": None,
        "emulated": False, "server": "10.0.0.8:9090"}


def _write_board_table(target: str, facts: dict) -> Path:
    points = [{"kind": k, "format": f, "dense_macs": 1e6, "sparsity": 0.0 if f == "dense" else 0.9, "work": 1e6,
               "us": 1.0} for k in KINDS for f in ("dense", "csr")]
    path = board_table_path(target, facts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "target": target, "machine": board_machine(facts), "threads": 1,
                                "backend": "tvm", "board": facts, "points": points}))
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ST_DEPLOY_CACHE", str(tmp_path))
    return tmp_path


def test_a_board_table_prices_its_target(cache: Path) -> None:
    with pytest.raises(DeployError, match=r"st-deploy tune --target aarch64 --rpc HOST:PORT"):
        default_table("aarch64", "tvm")
    fallback = tvm_table("aarch64")  # a TVM export for aarch64 before any board was tuned
    assert fallback.source == "default" and "no board table for aarch64" in fallback.note

    pi4 = _write_board_table("aarch64", PI4)
    assert pi4.name == "cost-aarch64-board-Raspberry_Pi_4_Model_B_Rev_1_4_ARM_implementer_0x41_part_0xd08_x4.json"
    t = tvm_table("aarch64")
    assert t.source == str(pi4) and t.backend == "tvm" and t.machine == "ARM implementer 0x41 part 0xd08 x4"
    assert "TVM" in t.describe() and "at 10.0.0.7:9090" in t.describe()
    assert load_table(pi4).board == PI4

    orin = _write_board_table("aarch64", ORIN)
    first, other = sorted([pi4, orin], key=lambda p: p.name)
    for _ in range(2):  # the same choice every time, whatever the directory order
        t = tvm_table("aarch64")
        assert t.source == str(first) and other.name in t.note and "--cost-table" in t.note
    p = plan(every_op_graph(), target="aarch64", input_shape=(1, 3, 32, 32))  # backend tvm by default
    assert p.cost_table == str(first) and "first by file name of 2 board tables" in p.cost_table_note
    assert p.to_dict()["cost_table_note"] == p.cost_table_note
    # rasp4 is a target of its own; the ONNX backend prices with ONNX Runtime tables only.
    assert tvm_table("rasp4").source == "default"
    with pytest.raises(DeployError, match="no cost table for target 'aarch64'"):
        default_table("aarch64", "onnx")


def test_llvm_takes_a_board_table_of_this_cpu_only(cache: Path) -> None:
    model, _, cores = machine_id().rpartition(" x")
    _write_board_table("llvm", {"machine": "x86_64", "cpu": "Another CPU", "cores": 64, "emulated": False})
    assert default_table("llvm", "tvm").source == "default"  # llvm builds for this CPU, not that board's
    here = _write_board_table("llvm", {"machine": "x86_64", "cpu": model, "cores": int(cores), "emulated": False})
    assert default_table("llvm", "tvm").source == str(here) and tvm_table("llvm").source == str(here)
    assert default_table("llvm", "onnx").source == "default"
    assert "no table measured here" in default_table("llvm", "onnx").note


def test_a_given_table_for_another_target_is_named(cache: Path) -> None:
    pi4 = _write_board_table("aarch64", PI4)
    p = plan(every_op_graph(), target="llvm", input_shape=(1, 3, 32, 32), cost_table=pi4)
    assert p.cost_table == str(pi4) and p.cost_table_note.endswith("given for target llvm")
