"""Benchmark statistics against numpy on synthetic timings; records and outputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from st_deploy.bench import bench, summarize, write_csv, write_json, write_plot
from st_deploy.graph.fidelity import seeded_input
from st_deploy.bench.machine import machine_info, machine_slug
from st_deploy.bench.stats import speedup


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=10.0), min_size=2, max_size=200),
       st.integers(min_value=1, max_value=64))
def test_summary_matches_numpy(times, batch):
    s = summarize(times, batch)
    t = np.array(times) * 1e3
    assert s["n"] == len(times)
    assert s["min_ms"] == pytest.approx(t.min())
    assert s["mean_ms"] == pytest.approx(t.mean())
    assert s["p50_ms"] == pytest.approx(np.median(t))
    assert s["p90_ms"] == pytest.approx(np.percentile(t, 90))
    assert s["p99_ms"] == pytest.approx(np.percentile(t, 99))
    assert s["std_ms"] == pytest.approx(t.std(ddof=1), rel=1e-9, abs=1e-12)
    assert s["throughput_items_s"] == pytest.approx(batch * 1e3 / t.mean())
    assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]


def test_summary_known_values():
    s = summarize([0.001, 0.002, 0.003, 0.004], batch=2)
    assert s["mean_ms"] == pytest.approx(2.5) and s["p50_ms"] == pytest.approx(2.5)
    assert s["throughput_items_s"] == pytest.approx(800.0)
    assert summarize([0.005], 1)["std_ms"] == 0.0
    assert speedup(10.0, 2.5) == 4.0


@pytest.mark.parametrize("bad", [[], [float("nan")], [-1.0]])
def test_summary_rejects_bad(bad):
    with pytest.raises(ValueError):
        summarize(bad, 1)


def test_machine_info():
    info = machine_info()
    assert info["cores"] >= 1 and info["cpu"] and "torch" in info["versions"]
    assert "/" not in machine_slug()


def test_seeded_input_is_deterministic():
    assert np.array_equal(seeded_input((1, 3, 4, 4), 7), seeded_input((1, 3, 4, 4), 7))


def test_torch_bench_and_outputs(tmp_path):
    from st_deploy.loaders.masked import from_module
    from st_deploy.models.zoo import resnet18_like
    ticket = from_module(resnet18_like(width=8).eval(), "st_deploy.models.zoo:resnet18_like", {"width": 8})
    result = bench(ticket, runtimes=["torch"], threads=[1], batches=[1, 2], warmup=1, repeat=5,
                   baseline="torch", input_shape=(1, 3, 32, 32))
    recs = result["records"]
    assert [(r["runtime"], r["batch"]) for r in recs] == [("torch", 1), ("torch", 2)]
    for r in recs:
        assert r["n"] == 5 and r["p50_ms"] > 0 and r["cold_ms"] > 0
        # Peak memory of a fresh process loading this masked zoo ticket (packed, model named) in torch.
        assert r["baseline_rss_mb"] > 0 and r["peak_rss_mb"] > r["baseline_rss_mb"], r
        assert r["fidelity_max_abs"] == 0.0 and r["speedup"] == pytest.approx(1.0)
    write_json(result, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["machine"]["cores"] >= 1
    write_csv(result, tmp_path / "r.csv")
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert len(rows) == 2 and float(rows[0]["p50_ms"]) > 0 and float(rows[0]["peak_rss_mb"]) > 0
    write_plot(result, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
