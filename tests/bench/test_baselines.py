"""The dense baselines of `st-deploy bench`: openvino (f32 pinned, bf16 on request), ort-plain, and
speedups against the fastest dense runtime of the run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter

import onnx
import pytest
import torch
from onnx import numpy_helper

from st_deploy import DeployError, load_ticket
from st_deploy.bench import BenchSource, bench, print_results
from st_deploy.bench.core import Record, _add_speedups
from st_deploy.bench.runtimes import DENSE_RUNTIMES, choose_runtimes
from tests.conftest import needs_samples

SHAPE = (1, 3, 64, 64)
INSTALL = 'pip install "st-deploy[openvino]"'


def require_openvino() -> None:
    """OpenVINO is in the [test] extra: CI (CI set, as .ci/run does) fails without it; elsewhere skip."""
    if importlib.util.find_spec("openvino") is not None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"openvino is not installed; CI={os.environ['CI']!r} requires it ({INSTALL})")
    pytest.skip(f"openvino is not installed ({INSTALL})")


@pytest.fixture
def cls_ticket(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("ST_DEPLOY_CACHE", str(tmp_path / "cache"))
    return load_ticket(samples / "cls_mini_supernet.state_dict")


@needs_samples
def test_openvino_f32_matches_the_ticket_and_bf16_is_its_own_row(cls_ticket, capsys):
    require_openvino()
    result = bench(BenchSource(ticket=cls_ticket), ["ort-dense", "openvino", "openvino-bf16"], threads=[1, 2],
                   batches=[1, 2], warmup=1, repeat=3, input_shape=SHAPE, memory=False)
    recs = {(r["runtime"], r["threads"], r["batch"]): r for r in result["records"]}
    assert len(recs) == 12
    for t in (1, 2):
        for b in (1, 2):
            ov = recs[("openvino", t, b)]
            assert ov["precision"] == "f32" and ov["openvino_config"]["INFERENCE_PRECISION_HINT"] == "f32"
            assert ov["openvino_config"]["INFERENCE_NUM_THREADS"] == str(t)
            assert ov["fidelity_max_rel"] <= 1e-5, ov
            bf = recs[("openvino-bf16", t, b)]
            # The precision recorded is what the compiled model reports; its error must match it.
            assert bf["precision"] == bf["openvino_config"]["INFERENCE_PRECISION_HINT"]
            if bf["precision"] == "bf16":
                assert bf["fidelity_max_rel"] > 1e-4, bf
            else:
                assert bf["fidelity_max_rel"] <= 1e-5, bf
            # Never the best-dense baseline, however fast.
            assert {r["baseline_runtime"] for k, r in recs.items() if k[1:] == (t, b)} <= {"ort-dense", "openvino"}
    print_results(result)
    out = capsys.readouterr().out
    if recs[("openvino-bf16", 1, 1)]["precision"] == "bf16":
        assert "openvino-bf16 1t b1 computes in bf16, not f32" in out


@needs_samples
def test_ort_plain_is_the_uncompacted_module_and_matches(cls_ticket):
    src = BenchSource(ticket=cls_ticket, input_shape=SHAPE)
    result = bench(src, ["ort-plain", "ort-sparse"], threads=[1], batches=[1, 3], warmup=1, repeat=3,
                   memory=False)
    for r in result["records"]:
        assert r["fidelity_max_rel"] <= 1e-5, r
        assert r["precision"] == "f32"
        assert r["baseline_runtime"] == "ort-plain"  # the only dense runtime of the run
    model = onnx.load(str(src.plain_onnx()))
    assert not any(o.domain == "st.sparse" for o in model.opset_import)
    convs = [m for m in cls_ticket.module.modules() if isinstance(m, torch.nn.Conv2d)]
    inits = {t.name: t for t in model.graph.initializer}
    weights = [inits[n.input[1]] for n in model.graph.node if n.op_type == "Conv"]
    # Uncompacted: one Conv per module conv, each weight in the module's full shape, masks applied (zeros kept).
    assert Counter(tuple(w.dims) for w in weights) == Counter(tuple(m.weight.shape) for m in convs)
    masked = sum(int((m.weight * m.weight_mask == 0).sum()) for m in convs if hasattr(m, "weight_mask"))
    assert masked > 0
    assert sum(int((numpy_helper.to_array(w) == 0).sum()) for w in weights) >= masked


def _rec(runtime: str, threads: int, batch: int, p50: float, precision: str = "f32") -> Record:
    return Record(runtime, threads, batch, {"p50_ms": p50}, 0.0, None, None, precision=precision)


def test_best_dense_is_the_fastest_dense_record_per_threads_and_batch():
    recs = [_rec("ort-dense", 1, 1, 20.0), _rec("openvino", 1, 1, 11.0), _rec("ort-sparse", 1, 1, 4.0),
            _rec("openvino-bf16", 1, 1, 6.0, "bf16"), _rec("torch-compact", 1, 1, 5.0),
            _rec("ort-dense", 2, 1, 9.0), _rec("openvino", 2, 1, 10.0), _rec("ort-sparse", 2, 1, 3.0),
            _rec("ort-sparse", 1, 8, 30.0)]
    _add_speedups(recs, "best-dense")
    by = {(r.runtime, r.threads, r.batch): r for r in recs}
    assert by[("ort-sparse", 1, 1)].baseline_runtime == "openvino"
    assert by[("ort-sparse", 1, 1)].speedup == pytest.approx(11.0 / 4.0)
    assert by[("openvino-bf16", 1, 1)].speedup == pytest.approx(11.0 / 6.0)  # compared, never the baseline
    assert by[("ort-sparse", 2, 1)].baseline_runtime == "ort-dense"
    assert by[("ort-sparse", 2, 1)].speedup == pytest.approx(3.0)
    assert by[("ort-sparse", 1, 1)].baseline == "best-dense"
    # No dense runtime at (1 thread, batch 8): no speedup rather than one against another batch.
    assert by[("ort-sparse", 1, 8)].speedup is None and by[("ort-sparse", 1, 8)].baseline_runtime is None
    assert "openvino-bf16" not in DENSE_RUNTIMES and "ort-sparse" not in DENSE_RUNTIMES

    forced = [_rec("ort-dense", 1, 1, 20.0), _rec("openvino", 1, 1, 11.0), _rec("ort-sparse", 1, 1, 4.0)]
    _add_speedups(forced, "ort-dense")
    assert {r.baseline_runtime for r in forced} == {"ort-dense"}
    assert forced[2].speedup == pytest.approx(5.0)


@needs_samples
def test_a_forced_baseline_must_be_in_the_run(cls_ticket):
    with pytest.raises(DeployError, match="--baseline ort-dense: not among the runtimes timed"):
        bench(BenchSource(ticket=cls_ticket), ["ort-sparse"], baseline="ort-dense", input_shape=SHAPE)


@needs_samples
def test_bench_json_names_the_baseline_runtime(cls_ticket, tmp_path):
    out = tmp_path / "r.json"
    env = {**os.environ, "ST_DEPLOY_CACHE": os.environ["ST_DEPLOY_CACHE"]}
    r = subprocess.run([sys.executable, "-m", "st_deploy", "bench", cls_ticket.source, "--runtime",
                        "ort-plain,ort-dense,ort-sparse", "--repeat", "3", "--warmup", "1", "--input-shape",
                        ",".join(map(str, SHAPE)), "--no-memory", "--json", str(out), "--csv", str(tmp_path / "r.csv")],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["baseline"] == "best-dense" and "ort-plain" in data["dense_runtimes"]
    recs = {x["runtime"]: x for x in data["records"]}
    fastest = min(("ort-plain", "ort-dense"), key=lambda k: recs[k]["p50_ms"])
    assert {x["baseline_runtime"] for x in data["records"]} == {fastest}
    assert "speedup: over the fastest dense f32 runtime" in r.stdout and f"{fastest} at 1t b1" in r.stdout
    assert "baseline_runtime,precision" in (tmp_path / "r.csv").read_text().splitlines()[0]


HIDE_OPENVINO = "import sys; sys.modules['openvino'] = None; from st_deploy.cli import main; main()"


@needs_samples
def test_missing_openvino_is_a_one_line_error(cls_ticket, monkeypatch):
    env = {**os.environ, "ST_DEPLOY_CACHE": os.environ["ST_DEPLOY_CACHE"]}
    r = subprocess.run([sys.executable, "-c", HIDE_OPENVINO, "bench", cls_ticket.source, "--runtime",
                        "ort-sparse,openvino", "--repeat", "1", "--no-memory"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("st-deploy: error: runtime openvino needs OpenVINO, which is not installed: "
                                + INSTALL)
    # Asked before any export: nothing was exported for the other runtime.
    assert not os.path.isdir(os.path.join(os.environ["ST_DEPLOY_CACHE"], "artifacts"))
    # "all" leaves openvino out and says why.
    monkeypatch.setitem(sys.modules, "openvino", None)
    names, line = choose_runtimes(BenchSource(ticket=cls_ticket), "all")
    assert "openvino" not in names and "openvino-bf16" not in names and "ort-plain" in names
    assert f"openvino left out: not installed ({INSTALL})" in line


def test_an_onnx_folder_serves_openvino_when_named(onnx_artifact):
    src = BenchSource(ticket=None, artifact=onnx_artifact)
    names, line = choose_runtimes(src, None)
    assert names == ["ort-dense", "ort-sparse"]  # the default is unchanged
    assert choose_runtimes(src, ["openvino"])[0] == ["openvino"]
    with pytest.raises(DeployError, match="ort-plain needs the ticket"):
        choose_runtimes(src, ["ort-plain"])


@needs_samples
def test_peak_memory_of_the_baselines(cls_ticket):
    require_openvino()
    result = bench(BenchSource(ticket=cls_ticket), ["ort-plain", "openvino"], threads=[1], batches=[1], warmup=1,
                   repeat=2, input_shape=SHAPE)
    for r in result["records"]:
        assert "peak_rss_error" not in r, r
        assert 50 < r["baseline_rss_mb"] < r["peak_rss_mb"], r
