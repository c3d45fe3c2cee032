"""Per-layer time of a TVM artifact: each kernel call mapped to its graph node and format."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from st_deploy import export, load_ticket
from st_deploy.graph.fidelity import seeded_input
from st_deploy.bench.per_layer import TVM_KERNEL_SYMBOLS, tvm_per_layer
from tests.conftest import needs_samples

pytestmark = needs_samples
SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def artifact(samples, tmp_path_factory):
    out = tmp_path_factory.mktemp("tvm") / "cls"
    return export(load_ticket(samples / "cls_mini_supernet.state_dict"), target="llvm", out=out, input_shape=SHAPE)


def test_kernel_calls_map_to_manifest_layers(artifact):
    prof = tvm_per_layer(artifact, seeded_input(SHAPE), runs=3, warmup=1)
    assert prof["attributed"] is True and "match" in prof["note"]
    manifest = json.loads((artifact / "manifest.json").read_text())
    layers = {lp["name"]: lp for lp in manifest["plan"]["layers"] if lp["impl"].split(" ")[0] not in ("", "relax")}
    kernel_rows = [r for r in prof["nodes"] if r["op"] not in ("relax op", "vm.builtin")]
    assert {r["op"] for r in kernel_rows} <= set(TVM_KERNEL_SYMBOLS)  # this CPU's kernels
    assert {r["node"] for r in kernel_rows} == set(layers)
    assert sorted(lp["call"] for lp in layers.values()) == list(range(len(layers)))
    # convs absorbed into an n-ary add are called at the add, after later layers of the graph
    graph_order = [lp["name"] for lp in manifest["plan"]["layers"] if lp["name"] in layers]
    assert sorted(layers, key=lambda n: layers[n]["call"]) != graph_order
    for r in kernel_rows:
        assert r["format"] == layers[r["node"]]["runs_as"] and r["op"] == layers[r["node"]]["impl"].split(" ")[0]
    assert {r["format"] for r in kernel_rows} & {"csr", "bsr4x1"}  # the sparse path is visible
    assert abs(sum(r["share"] for r in prof["nodes"]) - 1.0) < 1e-6
    assert all(r["mean_us"] >= 0 for r in prof["nodes"])
    assert prof["run_us"]["uninstrumented_median"] > 0 and prof["calls_per_run"] > len(kernel_rows)


def test_mismatch_is_said_not_guessed(artifact, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(artifact, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["plan"]["layers"] = m["plan"]["layers"][1:]  # one kernel layer fewer than the VM calls
    (bad / "manifest.json").write_text(json.dumps(m))
    prof = tvm_per_layer(bad, seeded_input(SHAPE), runs=1, warmup=0)
    assert prof["attributed"] is False and "NOT attributed" in prof["note"]
    assert not any(r["node"] in {lp["name"] for lp in m["plan"]["layers"]} for r in prof["nodes"])


def test_bench_command_prints_tvm_per_layer(artifact):
    r = subprocess.run([sys.executable, "-m", "st_deploy", "bench", str(artifact), "--runtime", "tvm-sparse",
                        "--baseline", "tvm-sparse", "--repeat", "2", "--warmup", "0", "--no-memory", "--per-layer"],
                       capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    assert "per layer: tvm-sparse (model.so)" in r.stdout and "Relax VM" in r.stdout
    assert "call order" in r.stdout and "not profiled" not in r.stdout


def test_a_cpu_artifact_is_not_benchmarked_as_gpu(artifact):
    from st_deploy.bench import BenchSource, bench
    from st_deploy.errors import DeployError
    with pytest.raises(DeployError, match="CPU artifact, but --device cuda"):
        bench(BenchSource(ticket=None, artifact=artifact, target="llvm"), ["tvm-sparse"], device="cuda",
              repeat=1, memory=False)


def test_bench_of_a_tvm_folder_times_its_own_runtime(artifact, tmp_path):
    """Issue #23: no --runtime for a folder means what it serves, and the command says so."""
    def bench_cmd(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "st_deploy", "bench", str(artifact), "--repeat", "2",
                               "--warmup", "0", "--no-memory", *extra], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "ST_DEPLOY_CACHE": str(tmp_path)})
    r = bench_cmd("--json", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    chosen = r.stdout.splitlines()[0]
    assert chosen.startswith(f"runtimes: tvm-sparse, what {artifact} serves (a TVM artifact for llvm, --format auto,")
    assert [x["runtime"] for x in json.loads((tmp_path / "r.json").read_text())["records"]] == ["tvm-sparse"]
    # one model.so: it is not timed a second time under the other name
    r = bench_cmd("--runtime", "tvm-dense")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "serves tvm-sparse; tvm-dense needs an artifact exported for it, or the ticket" in r.stderr
