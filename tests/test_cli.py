"""The CLI: help and version, JSON output, one-line errors with exit code 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import needs_samples

COMMANDS = ["example", "inspect", "pack", "compact", "bench", "rpc-server"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "st_deploy", *args], capture_output=True, text=True,
                          timeout=600)


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and "st-deploy, version" in r.stdout
    r = run("--help")
    assert r.returncode == 0
    for c in COMMANDS:
        assert c in r.stdout
        h = run(c, "--help")
        assert h.returncode == 0 and "Usage" in h.stdout


@needs_samples
def test_inspect_json(samples):
    r = run("inspect", str(samples / "cls_mini_supernet.state_dict"), "--json", "--input-shape", "1,3,64,64")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    t = report["totals"]
    assert t["params"] > t["nonzero_params"] > 0
    assert t["gflop_dense"] > t["gflop_nonzero"] > t["gflop_after_compaction_estimate"] > 0
    assert t["unselected_channels"] > 0
    assert {"name", "op", "shape", "sparsity", "unselected", "flops", "nonzero_flops"} <= set(report["layers"][0])


@needs_samples
def test_inspect_plain_when_piped(samples):
    r = run("inspect", str(samples / "cls_mini_searched.state_dict"), "--input-shape", "1,3,64,64")
    assert r.returncode == 0
    assert "GFLOP" in r.stdout and "\x1b[" not in r.stdout


@pytest.mark.parametrize("args,match", [
    (["inspect", "/nonexistent/x.state_dict"], "file not found"),
    (["inspect", "/nonexistent/x.state_dict", "--input-shape", "1,2"], "file not found|input-shape"),
])
def test_errors_are_one_line_exit_2(args, match):
    r = run(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("st-deploy: error:")
    assert re.search(match, lines[0]), lines[0]


def test_debug_shows_traceback():
    r = run("--debug", "inspect", "/nonexistent/x.state_dict")
    assert r.returncode != 0 and "Traceback" in r.stderr


@needs_samples
def test_pack(samples, tmp_path):
    out = tmp_path / "ticket.pt"
    r = run("pack", str(samples / "seg_mini_supernet.state_dict"), "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["family"] == "supertickets"
    r = run("pack", str(samples / "seg_mini_supernet.state_dict"), "-o", str(out))
    assert r.returncode == 2 and "--force" in r.stderr


@needs_samples
def test_compact_command(samples, tmp_path):
    out = tmp_path / "compact.pt"
    r = run("compact", str(samples / "cls_mini_supernet.state_dict"), "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["exact"] and report["error"]["max_rel"] <= 1e-5
    assert report["params"]["after"]["dense"] < report["params"]["before"]["dense"]
    import torch
    from st_deploy import load_ticket
    compacted = load_ticket(out)
    assert compacted.family == "compact"
    io = torch.load(samples / "cls_mini_supernet.io.pt", weights_only=True)
    assert (compacted(io["x"]) - io["y"]).abs().max() <= 1e-5 * io["y"].abs().max()
    r = run("compact", str(samples / "cls_mini_supernet.state_dict"), "-o", str(out))
    assert r.returncode == 2 and "--force" in r.stderr
