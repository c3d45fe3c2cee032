"""Triton hand-off: the model repository's config.pbtxt parses with Triton's own ModelConfig protobuf
(tritonclient's model_config_pb2), names our custom-op library, and its model runs as written."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.artifacts import inputs
from tests.conftest import import_test_extra

tritonclient = import_test_extra("tritonclient")


def model_config_pb2():
    """Triton's ModelConfig protobuf module. It lives in tritonclient/grpc/, whose package __init__
    needs grpcio (the [grpc] extra); the generated module itself needs only protobuf, so it is
    loaded from its file."""
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(folder: Path):
    from google.protobuf import text_format
    pb = model_config_pb2()
    return text_format.Parse((folder / "config.pbtxt").read_text(), pb.ModelConfig()), pb


def test_sparse_repository(onnx_artifact, tmp_path):
    from st_deploy.runtime.ort import LIBRARY_NAME
    from st_deploy.serve import write_triton_repo
    model = write_triton_repo(onnx_artifact, tmp_path / "repo", name="mnv2", instances=2, threads=2)
    assert model == tmp_path / "repo" / "mnv2"
    cfg, pb = parse(model)
    assert cfg.name == "mnv2" and cfg.backend == "onnxruntime" and cfg.default_model_filename == "model.onnx"
    assert cfg.max_batch_size == 8 and cfg.HasField("dynamic_batching")
    [inp], [out] = cfg.input, cfg.output
    assert (inp.name, inp.data_type, list(inp.dims)) == ("input", pb.TYPE_FP32, [3, 32, 32])
    assert (out.name, out.data_type, list(out.dims)) == ("classifier.1", pb.TYPE_FP32, [10])
    [group] = cfg.instance_group
    assert group.count == 2 and group.kind == pb.ModelInstanceGroup.KIND_CPU
    assert list(cfg.model_operations.op_library_filename) == [str((model / LIBRARY_NAME).resolve())]
    assert cfg.parameters["intra_op_thread_count"].string_value == "2"
    assert (model / "1" / "model.onnx").read_bytes() == (onnx_artifact / "model.sparse.onnx").read_bytes()

    # what Triton's onnxruntime backend does with it: register the named library, load 1/model.onnx
    import onnxruntime as ort

    import st_deploy
    so = ort.SessionOptions()
    so.register_custom_ops_library(cfg.model_operations.op_library_filename[0])
    session = ort.InferenceSession(str(model / "1" / "model.onnx"), so, providers=["CPUExecutionProvider"])
    x = inputs(1, batch=2, seed=20)[0]
    got = session.run(None, {"input": x})[0]
    ref = st_deploy.load(onnx_artifact, threads=1).run(x)
    assert np.abs(got - ref).max() <= 1e-5 * max(1.0, float(np.abs(ref).max()))


def test_dense_repository_and_options(onnx_artifact, tmp_path):
    from st_deploy.errors import DeployError
    from st_deploy.serve import write_triton_repo
    model = write_triton_repo(onnx_artifact, tmp_path / "repo", name="d", dense=True, max_batch=1)
    cfg, _ = parse(model)
    assert not cfg.HasField("model_operations") and not cfg.HasField("dynamic_batching")
    assert cfg.max_batch_size == 1 and sorted(p.name for p in model.iterdir()) == ["1", "config.pbtxt"]
    model = write_triton_repo(onnx_artifact, tmp_path / "repo", name="s", op_library="/models/s/lib.so")
    assert parse(model)[0].model_operations.op_library_filename == ["/models/s/lib.so"]
    with pytest.raises(DeployError, match="exists"):
        write_triton_repo(onnx_artifact, tmp_path / "repo", name="s")
    write_triton_repo(onnx_artifact, tmp_path / "repo", name="s", force=True)
    with pytest.raises(DeployError, match="name"):
        write_triton_repo(onnx_artifact, tmp_path / "repo", name="a/b")


def test_tvm_artifact_has_no_triton_repository(tvm_artifact, tmp_path):
    from st_deploy.errors import DeployError
    from st_deploy.serve import write_triton_repo
    with pytest.raises(DeployError, match="ONNX artifacts"):
        write_triton_repo(tvm_artifact, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_cli_export_triton_repo(tmp_path, ort_lib):
    from st_deploy.api import pack
    from tests.tickets import masked_zoo_ticket
    ticket = pack(masked_zoo_ticket("mobilenetv2_like", seed=1, density=0.2), tmp_path / "t.pt")
    run = [sys.executable, "-m", "st_deploy", "export", str(ticket), "--target", "onnx", "-o", str(tmp_path / "a"),
           "--input-shape", "1,3,32,32", "--triton-repo", str(tmp_path / "repo"), "--triton-instances", "3",
           "--json"]
    r = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    model = Path(json.loads(r.stdout)["triton_model"])
    assert model.parent == tmp_path / "repo"
    cfg, _ = parse(model)
    assert cfg.instance_group[0].count == 3 and len(cfg.model_operations.op_library_filename) == 1
    r = subprocess.run([*run[:6], "llvm", "-o", str(tmp_path / "b"), "--triton-repo", str(tmp_path / "r2")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "--triton-repo needs --target onnx" in r.stderr
