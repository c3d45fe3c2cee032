"""plan: a format per conv/linear layer from the cost table; tune: measured tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.graphs import every_op_graph
from st_deploy.errors import DeployError
from st_deploy.plan import plan, tune
from st_deploy.plan.cost import KINDS, CostTable, cached_table_path, default_table, load_table

SHAPE = (1, 3, 32, 32)


def _table(sparse_us: float, dense_us: float) -> CostTable:
    """A flat table: every sparse format runs `sparse_us`, dense `dense_us` per 1e6 work units."""
    pts = []
    for kind in KINDS:
        pts.append({"kind": kind, "format": "dense", "dense_macs": 1e6, "sparsity": 0.0, "work": 1e6, "us": dense_us})
        for fmt in ("csr", "bsr4x1"):
            pts.append({"kind": kind, "format": fmt, "dense_macs": 1e6, "sparsity": 0.9, "work": 1e6, "us": sparse_us})
    return CostTable(pts, "test", "llvm")


def test_auto_follows_the_cost_table() -> None:
    g = every_op_graph()
    fast_sparse = plan(g, input_shape=SHAPE, cost_table=_table(1.0, 1.0))  # sparse work is smaller
    by = {lp.name: lp for lp in fast_sparse.layers}
    assert by["pw1"].format in ("csr", "bsr4x1") and by["dw1"].format == "csr"
    # The grouped conv is offered a block-diagonal CSR too; at 0 % sparsity dense is predicted faster.
    assert by["grp"].kind == "grouped" and set(by["grp"].predicted_us) == {"dense", "csr"}
    assert by["grp"].format == "dense" and by["grp"].reason.startswith("fastest predicted")
    slow_sparse = plan(g, input_shape=SHAPE, cost_table=_table(1e4, 1.0))
    assert all(lp.format == "dense" for lp in slow_sparse.layers)
    assert all(lp.reason.startswith("fastest predicted") for lp in slow_sparse.layers)


def test_modes_and_records() -> None:
    g = every_op_graph()
    dense = plan(g, input_shape=SHAPE, format="dense")
    assert {lp.format for lp in dense.layers} == {"dense"}
    sparse = plan(g, input_shape=SHAPE, format="sparse")
    assert [lp.name for lp in sparse.layers if lp.format == "dense"] == []  # grouped convs too: block-diagonal CSR
    pw1 = next(lp for lp in sparse.layers if lp.name == "pw1")
    assert pw1.kind == "conv1x1" and pw1.weight_shape == (32, 16, 1, 1)
    assert pw1.in_shape == (1, 16, 16, 16) and pw1.out_shape == (1, 32, 16, 16)
    assert 0.8 < pw1.sparsity < 0.97
    assert set(pw1.predicted_us) == {"dense", "csr", "bsr4x1"}
    d = sparse.to_dict()
    assert d["mode"] == "sparse" and len(d["layers"]) == 12 and d["predicted_total_us"] > 0
    with pytest.raises(DeployError, match="format"):
        plan(g, input_shape=SHAPE, format="fastest")


def test_linear_formats_follow_the_backend() -> None:
    """A TVM artifact has only linear_csr; the ORT op also runs bsr4x1 linear layers. A plan that
    offered bsr4x1 for a linear layer made `export --target llvm --format sparse` fail."""
    g = every_op_graph()
    lin = [n.name for n in g.nodes if n.op == "linear"]
    assert lin
    flat = _table(1.0, 1e4)
    prefer_bsr = CostTable([dict(p, us=0.5) if p["format"] == "bsr4x1" else p for p in flat.points], "test", "llvm")
    for backend, allowed in (("tvm", {"dense", "csr"}), ("onnx", {"dense", "csr", "bsr4x1"})):
        for mode in ("sparse", "auto"):
            p = plan(g, input_shape=SHAPE, format=mode, cost_table=prefer_bsr, backend=backend)
            by = {lp.name: lp for lp in p.layers}
            for name in lin:
                assert set(by[name].predicted_us) == allowed, (backend, mode)
                assert by[name].format in allowed - {"dense"}, (backend, mode)


def test_default_table_predicts_sensibly() -> None:
    t = default_table("llvm")
    for kind in KINDS:
        assert t.predict(kind, "dense", 1e6, 0.0, 1e6) is not None
        assert t.predict(kind, "csr", 1e6, 0.9, 1e5) is not None
    # More sparsity, less work: never slower for a mid-size 1x1 conv.
    macs = 24 * 96 * 56 * 56
    times = [t.predict("conv1x1", "csr", macs, s, macs * (1 - s)) for s in (0.5, 0.7, 0.9, 0.95)]
    assert all(a >= b for a, b in zip(times, times[1:])), times
    # The shipped table says a 90 % sparse 1x1 conv at 56x56 beats dense (measured 2.5-4x here).
    assert times[2] < t.predict("conv1x1", "dense", macs, 0.0, macs)


def test_other_targets_need_a_tuned_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DeployError, match="st-deploy tune --target arm"):
        default_table("arm")


def test_cached_table_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = cached_table_path("llvm")
    path.parent.mkdir(parents=True)
    pts = _table(1e4, 1.0).points
    path.write_text(json.dumps({"version": 1, "target": "llvm", "points": pts}))
    p = plan(every_op_graph(), input_shape=SHAPE)
    assert p.cost_table == str(path)
    assert all(lp.format == "dense" for lp in p.layers)


@pytest.mark.parametrize("text,match", [("{", "unreadable"), ('{"version": 7, "points": []}', "not a cost table"),
                                        ('{"version": 1, "points": [{"kind": "conv1x1"}]}', "malformed")])
def test_bad_tables(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "t.json").write_text(text)
    with pytest.raises(DeployError, match=match):
        load_table(tmp_path / "t.json")


def test_tune_writes_a_usable_table(tmp_path: Path, ort_lib: Path) -> None:
    shapes = [{"kind": "conv1x1", "cin": 16, "cout": 32, "k": 1, "stride": 1, "hw": 14},
              {"kind": "dw", "cin": 16, "cout": 16, "k": 3, "stride": 1, "hw": 14}]
    path = tune(shapes=shapes, quick=True, out=tmp_path / "cost.json")
    table = load_table(path)
    kinds = {(p["kind"], p["format"]) for p in table.points}
    assert kinds == {("conv1x1", "dense"), ("conv1x1", "csr"), ("conv1x1", "bsr4x1"), ("dw", "dense"), ("dw", "csr")}
    assert all(p["us"] > 0 for p in table.points)
    with pytest.raises(DeployError, match="has no dense conv measurements"):
        plan(every_op_graph(), input_shape=SHAPE, cost_table=path)  # the stem is a 3x3 conv
    from tests.graphs import _conv
    from st_deploy.graph.ir import Graph
    gen = torch.Generator().manual_seed(0)
    g = Graph([_conv("pw", "x", 16, 32, 1, gen), _conv("dw", "pw", 32, 32, 3, gen, groups=32)], ["x"], ["dw"])
    p = plan(g, input_shape=(1, 16, 14, 14), cost_table=path)
    assert p.cost_table == str(path) and [lp.kind for lp in p.layers] == ["conv1x1", "dw"]
