"""The one manifest schema (st_deploy.artifact): what read_manifest accepts and refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from st_deploy.artifact import FORMAT_VERSION, KEYS, TARGET_KEYS, manifest, read_manifest, target_block
from st_deploy.errors import DeployError


def _fields() -> dict:
    fields = {k: [] for k in KEYS if k != "format_version"}
    fields["target"] = target_block("llvm", "tvm", "x86_64", "cpu", True, {})
    return fields


def _write(folder: Path, doc) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "manifest.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return folder


def test_a_written_manifest_reads_back(tmp_path: Path) -> None:
    m = manifest(**_fields())
    assert m["format_version"] == FORMAT_VERSION and list(m) == list(KEYS) and list(m["target"]) == list(TARGET_KEYS)
    assert read_manifest(_write(tmp_path / "a", m)) == m


def test_the_writer_refuses_a_missing_or_extra_key() -> None:
    fields = _fields()
    del fields["plan"]
    with pytest.raises(TypeError, match=r"missing \['plan'\]"):
        manifest(**fields)
    with pytest.raises(TypeError, match=r"unknown \['library'\]"):
        manifest(**_fields(), library="model.so")
    fields = _fields()
    fields["target"] = {k: v for k, v in fields["target"].items() if k != "device"}
    with pytest.raises(TypeError, match="target keys"):
        manifest(**fields)


def test_an_old_manifest_names_both_versions(tmp_path: Path) -> None:
    # What the TVM exporter wrote before the one schema (format_version 1, target.backend at the top).
    old = {"format_version": 1, "library": "model.so", "target": {"backend": "tvm", "name": "llvm"}}
    with pytest.raises(DeployError, match=rf"format_version 1, this st-deploy reads {FORMAT_VERSION} .*re-export"):
        read_manifest(_write(tmp_path / "tvm", old))
    with pytest.raises(DeployError, match=r"format_version 1,"):
        read_manifest(_write(tmp_path / "onnx", {"format_version": 1, "target": "onnx"}))


@pytest.mark.parametrize("doc,match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "a JSON list, not an object"),
    ({"format_version": FORMAT_VERSION}, "manifest lacks target, source"),
])
def test_bad_manifests_are_one_line_errors(tmp_path: Path, doc, match: str) -> None:
    with pytest.raises(DeployError, match=match) as e:
        read_manifest(_write(tmp_path / "x", doc))
    assert "\n" not in str(e.value)


def test_unknown_backend_and_missing_target_key(tmp_path: Path) -> None:
    m = manifest(**_fields())
    m["target"]["backend"] = "tflite"
    with pytest.raises(DeployError, match="unknown artifact backend 'tflite'"):
        read_manifest(_write(tmp_path / "b", m))
    del m["target"]["arch"]
    with pytest.raises(DeployError, match="lacks target.arch"):
        read_manifest(_write(tmp_path / "c", m))


def test_no_manifest(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match=r"no manifest.json; not an st-deploy export folder$"):
        read_manifest(tmp_path)
    # A ticket folder given where an artifact folder goes: the error names the file to pass.
    (tmp_path / "net.state_dict").write_bytes(b"")
    with pytest.raises(DeployError, match=r"it holds a ticket: pass .*net\.state_dict"):
        read_manifest(tmp_path)
