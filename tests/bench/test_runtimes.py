"""Every runtime on a shared sample: side by side, with fidelity against the ticket."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from st_deploy import load_ticket
from st_deploy.bench import BenchSource, bench
from tests.conftest import needs_samples

pytestmark = needs_samples
CPU_RUNTIMES = ["torch", "torch-compact", "ort-dense", "ort-sparse"]


def test_cpu_runtimes_side_by_side(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("ST_DEPLOY_CACHE", str(tmp_path / "cache"))
    ticket = load_ticket(samples / "cls_mini_supernet.state_dict")
    result = bench(BenchSource(ticket=ticket), CPU_RUNTIMES, threads=[1], batches=[1, 2], warmup=1,
                   repeat=3, baseline="ort-dense", input_shape=(1, 3, 64, 64), memory=False)
    recs = {(r["runtime"], r["batch"]): r for r in result["records"]}
    assert set(recs) == {(rt, b) for rt in CPU_RUNTIMES for b in (1, 2)}
    for r in recs.values():
        assert r["n"] == 3 and r["p50_ms"] > 0
        assert r["fidelity_max_rel"] <= 1e-5, r
        assert r["baseline"] == "ort-dense" and r["speedup"] > 0
    assert recs[("ort-dense", 1)]["speedup"] == pytest.approx(1.0)
    # The export is cached by ticket sha256 + target + format: a second run reuses it.
    cached = sorted(p.name for p in (tmp_path / "cache" / "artifacts").iterdir())
    assert len(cached) == 1
    bench(BenchSource(ticket=ticket), ["ort-sparse"], repeat=1, warmup=0, baseline="ort-sparse",
          input_shape=(1, 3, 64, 64), memory=False)
    assert sorted(p.name for p in (tmp_path / "cache" / "artifacts").iterdir()) == cached


def test_bench_command_writes_outputs(samples, tmp_path):
    env_cache = {"ST_DEPLOY_CACHE": str(tmp_path / "cache")}
    import os
    out = tmp_path / "r"
    r = subprocess.run([sys.executable, "-m", "st_deploy", "bench", str(samples / "seg_mini_supernet.state_dict"),
                        "--runtime", "torch,ort-sparse", "--baseline", "torch", "--repeat", "3", "--warmup", "1",
                        "--input-shape", "1,3,64,96", "--no-memory", "--json", f"{out}.json", "--csv", f"{out}.csv",
                        "--plot", f"{out}.png"], capture_output=True, text=True, timeout=900,
                       env={**os.environ, **env_cache})
    assert r.returncode == 0, r.stderr
    data = json.loads(open(f"{out}.json").read())
    assert [x["runtime"] for x in data["records"]] == ["torch", "ort-sparse"]
    assert data["machine"]["cores"] >= 1 and "versions" in data["machine"]
    assert open(f"{out}.csv").readline().startswith("runtime,threads,batch")
    assert open(f"{out}.png", "rb").read(4) == b"\x89PNG"
    assert "p50" in r.stdout


def test_unknown_runtime(samples):
    from st_deploy import DeployError
    with pytest.raises(DeployError, match="unknown runtime"):
        bench(load_ticket(samples / "cls_mini_supernet.state_dict"), ["tensorrt"])


def test_per_layer_shows_the_sparse_path(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("ST_DEPLOY_CACHE", str(tmp_path / "cache"))
    from st_deploy.graph.fidelity import seeded_input
    from st_deploy.bench.per_layer import ort_per_layer
    source = BenchSource(ticket=load_ticket(samples / "cls_mini_supernet.state_dict"), input_shape=(1, 3, 64, 64))
    folder = source.exported("onnx")
    prof = ort_per_layer(folder / "model.sparse.onnx", seeded_input((1, 3, 64, 64)), runs=3)
    formats = {r["format"] for r in prof["nodes"] if r["op"] == "SparseConv"}
    assert formats and formats <= {"csr", "bsr4x1", "dwcsr"}
    assert abs(sum(r["share"] for r in prof["nodes"]) - 1.0) < 1e-6
    dense = ort_per_layer(folder / "model.dense.onnx", seeded_input((1, 3, 64, 64)), runs=3)
    assert not any(r["op"] == "SparseConv" for r in dense["nodes"])


def test_gpu_paths_say_when_unavailable(samples):
    from st_deploy import DeployError
    ticket = load_ticket(samples / "cls_mini_supernet.state_dict")
    with pytest.raises(DeployError, match="no GPU path"):
        bench(ticket, ["torch"], device="cuda", repeat=1)
    import onnxruntime
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(DeployError, match="CUDAExecutionProvider"):
        bench(ticket, ["ort-dense"], device="cuda", repeat=1, input_shape=(1, 3, 64, 64))


def test_tvm_times_every_batch_on_an_artifact_of_that_batch(samples):
    """A TVM artifact's batch is fixed at export: bench exports one per batch timed (batch 2 used to
    fail with 'this artifact was built for (1, ...)')."""
    ticket = load_ticket(samples / "cls_mini_supernet.state_dict")
    src = BenchSource(ticket=ticket)
    result = bench(src, ["tvm-sparse"], threads=[1], batches=[1, 2], warmup=0, repeat=2,
                   baseline="tvm-sparse", input_shape=(1, 3, 64, 64), memory=False)
    recs = {r["batch"]: r for r in result["records"]}
    assert set(recs) == {1, 2}
    assert all(r["fidelity_max_rel"] <= 1e-5 for r in recs.values()), recs
    assert src.exported("llvm", batch=2) != src.exported("llvm", batch=1)
    assert src.exported("onnx", batch=2) == src.exported("onnx")  # ONNX artifacts run any batch
