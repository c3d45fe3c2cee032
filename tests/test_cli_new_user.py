"""Issue #23, through the CLI as a user types it: keypoint and ADE20K tickets get their own task
and input shape (and inspect says from what), `bench DIR` times what the artifact serves, and
`-o` makes missing parent folders."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import needs_samples

pytestmark = needs_samples


def run(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"ST_DEPLOY_CACHE": str(cache)} if cache else {})}
    return subprocess.run([sys.executable, "-m", "st_deploy", *args], capture_output=True, text=True,
                          timeout=600, env=env)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("st-deploy: error:"), r.stderr
    return lines[0]


def seg_variant(samples: Path, out: Path, num_classes: int, **kwparams) -> Path:
    """The seg sample with a num_classes head (new classifier weights) and changed kwparams: what a
    SuperTickets keypoint or ADE20K config writes, at the sample's size."""
    sd = torch.load(samples / "seg_mini_supernet.state_dict", weights_only=True)
    g = torch.Generator().manual_seed(0)
    sd["classifier.weight"] = torch.randn(num_classes, *sd["classifier.weight"].shape[1:], generator=g) * 0.1
    sd["classifier.bias"] = torch.zeros(num_classes)
    params = ast.literal_eval((samples / "seg_mini_supernet.yml").read_text())
    params.update(num_classes=num_classes, **kwparams)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(sd, out / "t.state_dict")
    (out / "t.yml").write_text(repr(params))
    return out / "t.state_dict"


def cls_variant(samples: Path, out: Path, **kwparams) -> Path:
    """The cls sample with changed kwparams (None: the key left out)."""
    params = ast.literal_eval((samples / "cls_mini_supernet.yml").read_text())
    params = {k: v for k, v in {**params, **kwparams}.items() if v is not None}
    (out / "t.yml").write_text(repr(params))
    (out / "t.state_dict").write_bytes((samples / "cls_mini_supernet.state_dict").read_bytes())
    return out / "t.state_dict"


@pytest.fixture(scope="module")
def keypoint_ticket(samples, tmp_path_factory) -> Path:
    return seg_variant(samples, tmp_path_factory.mktemp("kp"), 17, initial_for_heatmap=True)


def inspect_json(ticket: Path, *extra: str) -> dict:
    r = run("inspect", str(ticket), "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_keypoint_ticket_is_keypoints_at_256x192(keypoint_ticket):
    report = inspect_json(keypoint_ticket)
    assert report["task"] == "keypoints" and report["input_shape"] == [1, 3, 256, 192]
    assert "initial_for_heatmap True" in report["task_from"] and "17 heatmap" in report["task_from"]
    assert "COCO keypoints" in report["input_shape_from"]
    r = run("inspect", str(keypoint_ticket))
    assert r.returncode == 0, r.stderr
    assert "keypoints" in r.stdout and "task keypoints: from t.yml: task 'segmentation' with " \
                                         "initial_for_heatmap True" in r.stdout
    assert "input shape: the usual COCO keypoints input 256x192" in r.stdout
    # a shape the user gives is theirs, not a guess
    assert inspect_json(keypoint_ticket, "--input-shape", "1,3,64,48")["input_shape_from"] == "given"


@pytest.mark.parametrize("num_classes,shape,shape_says", [
    (150, [1, 3, 512, 512], "the usual ADE20K input 512x512 (t.yml: num_classes 150)"),
    (19, [1, 3, 512, 1024], "the usual Cityscapes input 512x1024 (t.yml: num_classes 19)"),
    (5, [1, 3, 512, 1024], "the usual Cityscapes input 512x1024 (num_classes 5 names no dataset known here"),
])
def test_segmentation_shape_follows_the_dataset(samples, tmp_path, num_classes, shape, shape_says):
    report = inspect_json(seg_variant(samples, tmp_path, num_classes))
    assert report["task"] == "segmentation" and report["input_shape"] == shape
    assert report["task_from"] == "t.yml: task 'segmentation'" and report["input_shape_from"].startswith(shape_says)


def test_a_heatmap_init_does_not_make_a_classifier_a_pose_net(samples, tmp_path):
    report = inspect_json(cls_variant(samples, tmp_path, initial_for_heatmap=True))
    assert report["task"] == "classification" and report["input_shape"] == [1, 3, 224, 224]
    assert "ImageNet" in report["input_shape_from"]


def test_a_config_without_task_says_it_took_the_default(samples, tmp_path):
    report = inspect_json(cls_variant(samples, tmp_path, task=None), "--input-shape", "1,3,64,64")
    assert report["task"] == "classification" and "names no task" in report["task_from"]


def test_bad_initial_for_heatmap_is_a_one_line_error(samples, tmp_path):
    ticket = seg_variant(samples, tmp_path, 17, initial_for_heatmap="yes")
    assert "'initial_for_heatmap' must be True or False" in one_line_error(run("inspect", str(ticket)))


def test_keypoints_survive_pack_and_compact_and_set_bench_shape(keypoint_ticket, tmp_path):
    packed, compacted = tmp_path / "kp.pt", tmp_path / "kp_compact.pt"
    assert run("pack", str(keypoint_ticket), "-o", str(packed)).returncode == 0
    report = inspect_json(packed)
    assert report["task"] == "keypoints" and report["input_shape"] == [1, 3, 256, 192]
    assert "initial_for_heatmap" in report["task_from"]  # the packed config keeps where it came from
    r = run("compact", str(keypoint_ticket), "-o", str(compacted))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "bench.json"
    r = run("bench", str(compacted), "--runtime", "torch", "--repeat", "2", "--warmup", "0", "--no-memory",
            "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["input_shape"] == [1, 3, 256, 192]
    assert "input 1x3x256x192" in r.stdout


@pytest.fixture(scope="module")
def onnx_artifact(samples, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`export -o` into folders that do not exist yet."""
    root = tmp_path_factory.mktemp("deep")
    out = root / "out" / "deep" / "dir"
    r = run("export", str(samples / "cls_mini_supernet.state_dict"), "--target", "onnx", "--input-shape",
            "1,3,64,64", "-o", str(out))
    return out, r


def test_export_makes_missing_parent_folders(onnx_artifact):
    out, r = onnx_artifact
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.dense.onnx", "model.sparse.onnx"]
    # the artifact was renamed into place whole: no temporaries beside it
    assert [p.name for p in out.parent.iterdir()] == ["dir"]


def test_bench_of_an_onnx_folder_times_what_it_serves(onnx_artifact, tmp_path):
    out, r = onnx_artifact
    assert r.returncode == 0, r.stderr
    result = tmp_path / "deeper" / "r.json"  # --json also makes its folder
    r = run("bench", str(out), "--repeat", "2", "--warmup", "0", "--no-memory", "--json", str(result),
            cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"runtimes: ort-dense, ort-sparse, what {out} serves (an ONNX artifact); " \
                                       f"--runtime to choose"
    data = json.loads(result.read_text())
    assert [x["runtime"] for x in data["records"]] == ["ort-dense", "ort-sparse"]
    assert data["runtimes_chosen"] == r.stdout.splitlines()[0]
    assert data["input_shape"] == [1, 3, 64, 64]
    # `all` for a folder is all it serves; a runtime it cannot serve is named with what it does serve
    r = run("bench", str(out), "--runtime", "all", "--repeat", "1", "--warmup", "0", "--no-memory",
            cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    # all it serves: both ORT models, and OpenVINO (f32) on the dense one where it is installed
    first = r.stdout.splitlines()[0]
    assert first.startswith("runtimes: ort-dense, ort-sparse, ") and f"what {out} serves" in first, first
    err = one_line_error(run("bench", str(out), "--runtime", "torch,ort-sparse", "--no-memory"))
    assert f"runtime torch: {out} is an ONNX artifact and serves ort-dense, ort-sparse" in err \
           and "torch needs the ticket" in err
    err = one_line_error(run("bench", str(out), "--runtime", "tvm-sparse", "--no-memory"))
    assert "serves ort-dense, ort-sparse" in err and "tvm-sparse needs an artifact exported for it" in err


def test_a_failed_export_leaves_no_folders_behind(samples, tmp_path):
    """An export over --tolerance exits 1 and writes nothing: the parents it made go again."""
    (tmp_path / "kept").mkdir()
    r = run("export", str(samples / "cls_mini_supernet.state_dict"), "--target", "onnx", "--input-shape",
            "1,3,64,64", "--tolerance", "1e-12", "-o", str(tmp_path / "kept" / "new" / "deeper" / "art"))
    assert r.returncode == 1 and "beyond tolerance" in r.stderr and "nothing written" in r.stderr, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and not any((tmp_path / "kept").iterdir())


def test_pack_makes_missing_parent_folders(samples, tmp_path):
    out = tmp_path / "a" / "b" / "ticket.pt"
    r = run("pack", str(samples / "cls_mini_supernet.state_dict"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == ["ticket.pt"]


def test_a_file_in_the_way_of_the_folder_is_a_one_line_error(samples, tmp_path):
    (tmp_path / "file").write_text("x")
    err = one_line_error(run("pack", str(samples / "cls_mini_supernet.state_dict"), "-o",
                             str(tmp_path / "file" / "sub" / "ticket.pt")))
    assert f"cannot create folder {tmp_path / 'file' / 'sub'}" in err
    assert (tmp_path / "file").read_text() == "x"


def test_python_export_makes_missing_parent_folders(samples, tmp_path):
    import st_deploy
    out = st_deploy.export(samples / "cls_mini_supernet.state_dict", target="onnx", out=tmp_path / "x" / "y" / "art",
                           input_shape=(1, 3, 64, 64))
    assert (out / "manifest.json").is_file()
