"""export(target="onnx"): both models pass the checker, run in ORT and match the ticket."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from st_deploy.artifact import read_manifest
from st_deploy.errors import DeployError, FidelityError
from st_deploy.export import export
from st_deploy.graph.module import GraphModule
from st_deploy.runtime.ort import ort_session
from tests.conftest import needs_samples
from tests.graphs import every_op_graph


def _rel(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.max(np.abs(ref - got)) / max(np.max(np.abs(ref)), 1e-12))


def _check_models(out: Path, reference, shape: tuple[int, ...], batch: int = 2) -> dict:
    """Both models at another batch size (the batch dim is dynamic) against the reference."""
    x = torch.randn((batch, *shape[1:]), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = reference(x).numpy()
    rels = {}
    for name in ("model.dense.onnx", "model.sparse.onnx"):
        sess = ort_session(out / name, threads=1)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert got.shape == ref.shape, name
        rels[name] = _rel(ref, got)
        assert rels[name] <= 1e-5, (name, rels[name])
    return rels


@pytest.mark.parametrize("fmt", ["auto", "sparse", "dense"])
def test_every_op_graph(tmp_path: Path, ort_lib: Path, fmt: str) -> None:
    graph = every_op_graph()
    out = export(graph, out=tmp_path / "o", input_shape=(1, 3, 32, 32), format=fmt)
    dense = onnx.load(out / "model.dense.onnx")
    onnx.checker.check_model(dense, full_check=True)
    assert dense.opset_import[0].version >= 17
    assert {o.domain for o in dense.opset_import} == {""}
    assert dense.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    # Stock onnxruntime runs the dense model without our library.
    plain = ort.InferenceSession(str(out / "model.dense.onnx"), providers=["CPUExecutionProvider"])
    assert plain.run(None, {"x": np.zeros((1, 3, 32, 32), np.float32)})[0].shape == (1, 10)
    _check_models(out, GraphModule(graph), (1, 3, 32, 32))

    sparse = onnx.load(out / "model.sparse.onnx")
    ops = [(n.domain, n.op_type) for n in sparse.graph.node]
    manifest = json.loads((out / "manifest.json").read_text())
    planned = {lp["name"]: lp["format"] for lp in manifest["plan"]["layers"]}
    n_sparse = sum(f != "dense" for f in planned.values())
    assert ops.count(("st.sparse", "SparseConv")) == n_sparse
    if fmt == "dense":
        assert n_sparse == 0
    if fmt == "sparse":
        # Every layer is sparse, the grouped conv too (a block-diagonal CSR of its groups).
        grp = next(lp for lp in manifest["plan"]["layers"] if lp["name"] == "grp")
        assert grp["kind"] == "grouped" and grp["format"] == "csr"
        assert n_sparse == len(planned)
        # The 3-input add of sparse branches became a chain of residual epilogues: no Add left for it.
        assert not any(n.name.startswith("sum3") and n.op_type == "Add" for n in sparse.graph.node)


def test_manifest(tmp_path: Path, ort_lib: Path) -> None:
    out = export(every_op_graph(), out=tmp_path / "o", input_shape=(1, 3, 32, 32))
    m = read_manifest(out)
    assert m["format_version"] == 2 and m["target"]["backend"] == "onnx" and m["target"]["name"] == "onnx"
    assert m["target"]["options"]["opsets"]["st.sparse"] == 1 and m["compaction"]["not_run"]
    assert m["inputs"] == [{"name": "x", "shape": ["N", 3, 32, 32], "dtype": "float32"}]
    assert m["outputs"][0]["shape"] == ["N", 10]
    for name in ("model.dense.onnx", "model.sparse.onnx"):
        assert m["files"][name]["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
        assert m["fidelity"]["files"][name]["rel"] <= 1e-4
    layers = m["plan"]["layers"]
    assert [lp["name"] for lp in layers] == ["stem", "pw1", "dw1", "proj1", "b1", "b2", "b3", "grp", "down",
                                             "fuse", "fc1", "fc2"]
    for lp in layers:
        assert lp["format"] in ("dense", "csr", "bsr4x1")
        assert lp["format"] in lp["predicted_us"]  # auto mode picks among priced formats only
        assert 0.0 <= lp["sparsity"] <= 1.0 and lp["reason"]
    assert {"st_deploy", "onnx", "onnxruntime"} <= set(m["versions"])


def test_fidelity_error_writes_nothing(tmp_path: Path, ort_lib: Path) -> None:
    # fp32 reassociation differs by ~1e-7: a 1e-12 tolerance must refuse the export.
    with pytest.raises(FidelityError, match="beyond tolerance"):
        export(every_op_graph(), out=tmp_path / "o", input_shape=(1, 3, 32, 32), tolerance=1e-12)
    assert not (tmp_path / "o").exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_out_needs_force(tmp_path: Path, ort_lib: Path) -> None:
    (tmp_path / "o").mkdir()
    with pytest.raises(DeployError, match="exists"):
        export(every_op_graph(), out=tmp_path / "o", input_shape=(1, 3, 32, 32))
    export(every_op_graph(), out=tmp_path / "o", input_shape=(1, 3, 32, 32), force=True)
    assert (tmp_path / "o" / "manifest.json").is_file()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="input_shape"):
        export(every_op_graph(), out=tmp_path / "o")
    with pytest.raises(DeployError, match="target"):
        export(every_op_graph(), target="tflite", out=tmp_path / "o", input_shape=(1, 3, 32, 32))
    with pytest.raises(DeployError, match="format"):
        export(every_op_graph(), out=tmp_path / "o", input_shape=(1, 3, 32, 32), format="fast")


def _masked_zoo_ticket(tmp_path: Path, name: str, sparsity: float = 0.9):
    """A zoo model pruned with torch.nn.utils.prune (90 % random masks), trained-looking BN
    statistics, saved as a state_dict and read back through the masked loader, as a user would."""
    from torch.nn.utils import prune

    from st_deploy.loaders import load_ticket
    from st_deploy.models.zoo import ZOO
    torch.manual_seed(0)
    model = ZOO[name]()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            prune.random_unstructured(m, "weight", amount=sparsity)
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    return load_ticket(path, model=f"st_deploy.models.zoo:{name}", input_shape=(1, 3, 64, 64))


@pytest.mark.parametrize("name", ["resnet18_like", "mobilenetv2_like"])
def test_zoo_models(tmp_path: Path, ort_lib: Path, name: str) -> None:
    ticket = _masked_zoo_ticket(tmp_path, name)
    out = export(ticket, out=tmp_path / name)
    m = read_manifest(out)
    assert m["source"]["sha256"] == ticket.sha256 and ticket.sha256
    assert m["compaction"]["channels"]["removed"] >= 0 and m["compaction"]["error"]["max_rel"] <= 1e-5
    assert any(lp["format"] != "dense" for lp in m["plan"]["layers"])
    _check_models(out, ticket.module, ticket.default_input_shape)


@needs_samples
def test_shared_supertickets_sample(tmp_path: Path, ort_lib: Path, samples: Path) -> None:
    sd = samples / "cls_mini_searched.state_dict"
    from st_deploy.loaders import load_ticket
    ticket = load_ticket(sd)
    out = export(ticket, out=tmp_path / "mini")
    m = json.loads((out / "manifest.json").read_text())
    assert m["source"]["sha256"] == ticket.sha256 and ticket.sha256
    _check_models(out, ticket.module, ticket.default_input_shape, batch=1)
