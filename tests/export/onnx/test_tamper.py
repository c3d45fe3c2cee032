"""A malformed st.sparse layer fails at session creation with a message, never a crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.graphs import every_op_graph
from st_deploy.errors import DeployError
from st_deploy.export import export
from st_deploy.runtime.ort import ort_session
from tests.ort_lib import require_ort_library


@pytest.fixture(scope="module")
def sparse_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_ort_library()
    out = export(every_op_graph(), out=tmp_path_factory.mktemp("t") / "o", input_shape=(1, 3, 32, 32),
                 format="sparse")
    return out / "model.sparse.onnx"


def _tampered(src: Path, dst: Path, layer: str, array: str, change) -> Path:
    m = onnx.load(src)
    for i, init in enumerate(m.graph.initializer):
        if init.name == f"{layer}.{array}":
            a = numpy_helper.to_array(init).copy()
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(change(a), init.name))
            break
    else:
        raise AssertionError(f"no initializer {layer}.{array}")
    onnx.save(m, dst)
    return dst


def _set(a: np.ndarray, i: int, v: int) -> np.ndarray:
    a[i] = v
    return a


CASES = [
    ("pw1", "indices", lambda a: _set(a, 3, 16), r"column index 16 .* out of range \[0, 16\)"),
    ("b2", "indices", lambda a: _set(a, 0, -1), r"column index -1 .* out of range"),
    ("dw1", "indices", lambda a: _set(a, 0, 9), r"out of range \[0, 9\)"),
    ("pw1", "values", lambda a: a[:-1], r"values has \d+ entries, expected"),
    ("pw1", "indptr", lambda a: a[:-1], r"indptr has 32 entries, expected 33"),
    ("pw1", "indptr", lambda a: _set(a, 5, a[4] - 1), r"indptr decreases"),
    ("pw1", "indptr", lambda a: _set(a, len(a) - 1, a[-1] + 7), r"indptr ends at"),
    # fuse and fc1 read 40 channels, padded to 48 for ORT's 16-channel blocks (st_deploy.plan.padding).
    ("fuse", "bias", lambda a: a[:-2], r"bias has 46 entries, out_channels is 48"),
    ("fc1", "indices", lambda a: _set(a, 0, 1 << 30), r"out of range \[0, 48\)"),
]


@pytest.mark.parametrize("layer,array,change,message", CASES, ids=[f"{c[0]}.{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_tampered_arrays_fail_at_session_creation(sparse_model: Path, tmp_path: Path, layer, array, change,
                                                  message) -> None:
    bad = _tampered(sparse_model, tmp_path / "bad.onnx", layer, array, change)
    with pytest.raises(DeployError, match=message) as e:
        ort_session(bad, threads=1)
    assert f"SparseConv node '{layer}'" in str(e.value)


def test_weights_must_be_initializers(sparse_model: Path, tmp_path: Path) -> None:
    # indptr fed at run time instead of stored: it cannot be validated up front, so it is refused.
    m = onnx.load(sparse_model)
    init = next(i for i in m.graph.initializer if i.name == "pw1.indptr")
    m.graph.initializer.remove(init)
    m.graph.input.append(onnx.helper.make_tensor_value_info("pw1.indptr", onnx.TensorProto.INT32, [33]))
    onnx.save(m, tmp_path / "bad.onnx")
    with pytest.raises(DeployError, match="indptr must be an initializer"):
        ort_session(tmp_path / "bad.onnx", threads=1)


def test_bad_attribute(sparse_model: Path, tmp_path: Path) -> None:
    m = onnx.load(sparse_model)
    node = next(n for n in m.graph.node if n.name == "pw1")
    for a in node.attribute:
        if a.name == "activation":
            a.s = b"gelu"
    onnx.save(m, tmp_path / "bad.onnx")
    with pytest.raises(DeployError, match="unknown activation 'gelu'"):
        ort_session(tmp_path / "bad.onnx", threads=1)


def test_wrong_input_channels_at_run_time(sparse_model: Path, tmp_path: Path) -> None:
    # The graph input's declared shape is checked by ORT; a mismatching in_channels attribute is ours.
    m = onnx.load(sparse_model)
    node = next(n for n in m.graph.node if n.name == "stem")
    for a in node.attribute:
        if a.name == "in_channels":
            a.i = 4
    onnx.save(m, tmp_path / "bad.onnx")
    try:
        sess = ort_session(tmp_path / "bad.onnx", threads=1)
    except DeployError as e:  # caught at creation: also acceptable
        assert "stem" in str(e)
        return
    with pytest.raises(Exception, match=r"input has shape \[1, 3, 32, 32\], expected \[N, 4, H, W\]"):
        sess.run(None, {"x": np.zeros((1, 3, 32, 32), np.float32)})


def test_missing_library_names_ort_session(sparse_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ST_DEPLOY_ORT_LIB", "/nonexistent/libst_deploy_ort.so")
    with pytest.raises(DeployError, match="st_deploy.ort_session"):
        ort_session(sparse_model, threads=1)
