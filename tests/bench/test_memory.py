"""Peak resident memory per configuration, each measured in its own child process."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from st_deploy import load_ticket
from st_deploy.bench import BenchSource, bench, print_results, write_csv
from st_deploy.bench._rss_child import current_rss_mb
from st_deploy.bench.memory import baseline_rss
from tests.conftest import needs_samples


@pytest.mark.skipif(current_rss_mb() is None, reason="needs /proc/self/statm (Linux)")
def test_child_peak_is_its_own_not_the_parents():
    # Linux carries a parent's resident size over fork+exec into the child's ru_maxrss; the child
    # must report its own high-water mark, so a child of a big process stays small.
    ballast = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
    parent = current_rss_mb()
    got = baseline_rss("torch")
    assert "error" not in got, got
    assert 0 < got["peak_rss_mb"] < parent - 200, (got, parent)
    del ballast


@needs_samples
def test_ort_peak_rss_per_configuration(samples, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ST_DEPLOY_CACHE", str(tmp_path / "cache"))
    ticket = load_ticket(samples / "cls_mini_supernet.state_dict")
    result = bench(BenchSource(ticket=ticket), ["ort-dense", "ort-sparse"], threads=[1], batches=[1], warmup=1,
                   repeat=2, input_shape=(1, 3, 64, 64))
    recs = {r["runtime"]: r for r in result["records"]}
    assert set(recs) == {"ort-dense", "ort-sparse"}
    base = recs["ort-dense"]["baseline_rss_mb"]
    assert base == recs["ort-sparse"]["baseline_rss_mb"]  # one baseline process per runtime library
    for r in recs.values():
        assert "peak_rss_error" not in r, r
        peak = r["peak_rss_mb"]
        assert math.isfinite(peak) and math.isfinite(base)
        # Above the process that imports the same and loads no model; far below anything absurd.
        assert 50 < base < peak < base + 2048, r
    print_results(result)
    out = capsys.readouterr().out
    assert "peak MB" in out and "baseline processes" in out
    write_csv(result, tmp_path / "r.csv")
    row = next(csv.DictReader(open(tmp_path / "r.csv")))
    assert float(row["peak_rss_mb"]) > float(row["baseline_rss_mb"]) > 0
