"""Graph -> model.so for this machine's CPU: outputs, manifest, plans, failures."""

from __future__ import annotations

import os

import pytest

from tests.artifacts import REL, check_against, manifest
from st_deploy.errors import DeployError, FidelityError
from st_deploy.export.tvm import export_tvm
from st_deploy.graph.module import GraphModule

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def sparse_out(every_op, tmp_path_factory):
    return export_tvm(every_op, "llvm", tmp_path_factory.mktemp("tvm") / "sparse", input_shape=SHAPE)


def test_every_op_matches_and_manifest_says_how(every_op, sparse_out):
    assert check_against(sparse_out, GraphModule(every_op), SHAPE) <= REL
    m = manifest(sparse_out)
    assert m["format_version"] == 2 and list(m["files"]) == ["model.so"] and m["files"]["model.so"]["role"] == "library"
    assert m["target"]["backend"] == "tvm" and m["target"]["options"]["tvm"]["mcpu"] not in ("", "generic")
    assert m["target"]["device"] == "cpu" and m["target"]["kernels"] is True
    assert m["inputs"] == [{"name": "x", "shape": [1, 3, 32, 32], "dtype": "float32"}]
    assert m["outputs"][0]["shape"] == [1, 10]
    assert m["fidelity"]["files"]["model.so"]["rel"] <= REL and m["fidelity"]["measured_on"].startswith("this artifact")
    assert m["channel_padding"]["tensors"] == [] and m["compaction"] == {
        "not_run": "the exporter was given a graph, compacted or not, and exported it as it is"}
    layers = {lp["name"]: lp for lp in m["plan"]["layers"]}
    # plan=None: csr where masked and >= 50 % sparse, dense otherwise (grp is 0 % sparse: block-diagonal dense)
    assert layers["pw1"]["format"] == "csr" and layers["pw1"]["impl"] == "conv2d_csr"
    assert layers["dw1"]["impl"] == "dwconv2d_csr"
    assert layers["grp"]["format"] == "dense" and "block-diagonal" in layers["grp"]["impl"]
    assert layers["fc2"]["format"] == "dense" and layers["fc2"]["impl"] == "linear_dense"
    assert layers["proj1"]["fused"] == "residual add res1"
    # the 3-input add: b1 seeds the sum, b2 and b3 take the running sum as their residual
    assert "fused" not in layers["b1"]
    assert layers["b2"]["fused"] == layers["b3"]["fused"] == "residual add sum3"
    assert oct(os.stat(sparse_out).st_mode & 0o777) != oct(0o700)


def test_dense_plan_runs_every_layer_dense(every_op, tmp_path):
    out = export_tvm(every_op, "llvm", tmp_path / "dense", input_shape=SHAPE, plan="dense")
    assert check_against(out, GraphModule(every_op), SHAPE) <= REL
    layers = manifest(out)["plan"]["layers"]
    assert {lp["runs_as"] for lp in layers} == {"dense"}
    assert {lp["impl"] for lp in layers} >= {"conv2d_bsr (4x1 blocks, full density)", "dwconv2d"}


def test_bsr_and_dict_plans(every_op, tmp_path):
    plan = {"pw1": "bsr4x1", "b2": "bsr4x1", "dw1": "csr", "fc1": "csr"}
    out = export_tvm(every_op, "llvm", tmp_path / "mixed", input_shape=SHAPE, plan=plan)
    assert check_against(out, GraphModule(every_op), SHAPE) <= REL
    layers = {lp["name"]: lp for lp in manifest(out)["plan"]["layers"]}
    assert layers["pw1"]["impl"] == "conv2d_bsr (4x1 blocks)" and layers["b1"]["format"] == "dense"


def test_plan_errors_name_the_layer(every_op, tmp_path):
    with pytest.raises(DeployError, match="dw1 .*no bsr4x1 kernel"):
        export_tvm(every_op, "llvm", tmp_path / "x", input_shape=SHAPE, plan={"dw1": "bsr4x1"})
    with pytest.raises(DeployError, match="nope"):
        export_tvm(every_op, "llvm", tmp_path / "x", input_shape=SHAPE, plan={"nope": "csr"})
    with pytest.raises(DeployError, match="input_shape"):
        export_tvm(every_op, "llvm", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_fidelity_failure_writes_nothing(every_op, tmp_path):
    with pytest.raises(FidelityError, match="beyond tolerance"):
        export_tvm(every_op, "llvm", tmp_path / "strict", input_shape=SHAPE, tolerance=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_needs_force(every_op, sparse_out):
    with pytest.raises(DeployError, match="exists"):
        export_tvm(every_op, "llvm", sparse_out, input_shape=SHAPE)
