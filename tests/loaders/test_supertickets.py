"""SuperTickets checkpoints load into modules that reproduce the samples' outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from st_deploy import DeployError, load_ticket, save_ticket
from tests.conftest import SAMPLE_NAMES, needs_samples, sample_io

pytestmark = needs_samples


def copy_trio(samples: Path, name: str, dst: Path, with_checkpoint: bool = True) -> Path:
    for suffix in (".state_dict", ".yml", ".json") + ((".checkpoint.json",) if with_checkpoint else ()):
        src = samples / f"{name}{suffix}"
        if src.exists():
            shutil.copy(src, dst / src.name)
    return dst / f"{name}.state_dict"


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_reproduces_y(samples, name):
    ticket = load_ticket(samples / f"{name}.state_dict")
    io = sample_io(samples, name)
    y = ticket(io["x"])
    assert y.shape == io["y"].shape
    assert (y - io["y"]).abs().max() <= 1e-5 * io["y"].abs().max()
    assert not ticket.module.training
    assert ticket.family == "supertickets"


def test_task_and_default_shape(samples):
    assert load_ticket(samples / "cls_mini_supernet.state_dict").default_input_shape == (1, 3, 224, 224)
    seg = load_ticket(samples / "seg_mini_supernet.state_dict")
    assert seg.task == "segmentation" and seg.default_input_shape == (1, 3, 512, 1024)


def test_searched_arch_read_off_shapes_matches_checkpoint(samples, tmp_path):
    path = copy_trio(samples, "cls_mini_searched", tmp_path, with_checkpoint=False)
    ticket = load_ticket(path)
    ckpt = json.loads((samples / "cls_mini_searched.checkpoint.json").read_text())
    table = list(ticket.config["blocks"].values())
    assert [[e[3], e[4]] for e in ckpt] == table
    assert ticket.config["variant"] == "searched"
    io = sample_io(samples, "cls_mini_searched")
    assert (ticket(io["x"]) - io["y"]).abs().max() <= 1e-5 * io["y"].abs().max()


def test_inconsistent_checkpoint_json(samples, tmp_path):
    path = copy_trio(samples, "cls_mini_searched", tmp_path)
    ckpt_path = tmp_path / "cls_mini_searched.checkpoint.json"
    ckpt = json.loads(ckpt_path.read_text())
    ckpt[3][4] = [h + 1 for h in ckpt[3][4]]
    ckpt_path.write_text(json.dumps(ckpt))
    with pytest.raises(DeployError, match="block 3"):
        load_ticket(path)


def test_pickled_whole_model_is_never_unpickled(samples, tmp_path):
    lonely = tmp_path / "model.pt"
    lonely.write_bytes(b"\x80\x04not really a model")
    with pytest.raises(DeployError, match="never unpickled"):
        load_ticket(lonely)
    # With the siblings present, X.pt is a pointer to them.
    path = copy_trio(samples, "cls_mini_supernet", tmp_path)
    (tmp_path / "cls_mini_supernet.pt").write_bytes(b"garbage")
    ticket = load_ticket(tmp_path / "cls_mini_supernet.pt")
    assert ticket.source == str(path)


def test_missing_yml(samples, tmp_path):
    shutil.copy(samples / "cls_mini_supernet.state_dict", tmp_path)
    with pytest.raises(DeployError, match="yml"):
        load_ticket(tmp_path / "cls_mini_supernet.state_dict")


@pytest.mark.parametrize("text,match", [
    ("[1, 2, 3]", "expected a dict"),
    ("{'task': 'classification'", "not a Python dict literal"),
    ("__import__('os').system('true')", "not a Python dict literal"),
])
def test_bad_yml(samples, tmp_path, text, match):
    path = copy_trio(samples, "cls_mini_supernet", tmp_path)
    (tmp_path / "cls_mini_supernet.yml").write_text(text)
    with pytest.raises(DeployError, match=match):
        load_ticket(path)


def test_yml_wrong_types(samples, tmp_path):
    path = copy_trio(samples, "cls_mini_supernet", tmp_path)
    yml = tmp_path / "cls_mini_supernet.yml"
    yml.write_text(yml.read_text().replace("'num_classes': 10", "'num_classes': 'ten'"))
    with pytest.raises(DeployError, match="num_classes"):
        load_ticket(path)


def _rewrite_sd(path: Path, edit) -> None:
    sd = torch.load(path, weights_only=True)
    edit(sd)
    torch.save(sd, path)


def test_shape_mismatch_names_key_and_shapes(samples, tmp_path):
    path = copy_trio(samples, "cls_mini_supernet", tmp_path)
    _rewrite_sd(path, lambda sd: sd.__setitem__("classifier.1.bias", torch.zeros(11)))
    with pytest.raises(DeployError, match=r"classifier\.1\.bias.*\(11,\).*\(10,\)"):
        load_ticket(path)


def test_missing_and_unexpected_keys(samples, tmp_path):
    path = copy_trio(samples, "cls_mini_supernet", tmp_path)
    _rewrite_sd(path, lambda sd: sd.pop("downsamples.0.1.running_var"))
    with pytest.raises(DeployError, match="downsamples.0.1.running_var.*missing"):
        load_ticket(path)
    path = copy_trio(samples, "cls_mini_supernet", tmp_path)
    _rewrite_sd(path, lambda sd: sd.__setitem__("extra.weight", torch.zeros(1)))
    with pytest.raises(DeployError, match="extra.weight"):
        load_ticket(path)


def test_non_binary_mask_and_nan(samples, tmp_path):
    path = copy_trio(samples, "cls_mini_supernet", tmp_path)

    def half_mask(sd):
        sd["downsamples.0.0.weight_mask"][0, 0, 0, 0] = 0.5
    _rewrite_sd(path, half_mask)
    with pytest.raises(DeployError, match="not binary"):
        load_ticket(path)
    path = copy_trio(samples, "cls_mini_supernet", tmp_path)

    def nan(sd):
        sd["downsamples.0.0.weight"][0, 0, 0, 0] = float("nan")
    _rewrite_sd(path, nan)
    with pytest.raises(DeployError, match="NaN or Inf"):
        load_ticket(path)


def test_truncated_file(samples, tmp_path):
    path = copy_trio(samples, "cls_mini_supernet", tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DeployError, match="truncated or corrupt|not a readable"):
        load_ticket(path)


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_objects_does_not_run(samples, tmp_path):
    path = copy_trio(samples, "cls_mini_supernet", tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"downsamples.0.0.weight": _Payload(marker)}, path)
    with pytest.raises(DeployError, match="refused to unpickle"):
        load_ticket(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_pack_round_trip(samples, tmp_path, name):
    ticket = load_ticket(samples / f"{name}.state_dict")
    out = save_ticket(ticket, tmp_path / "ticket.pt")
    obj = torch.load(out, weights_only=True)
    assert obj["format"] == "st-deploy-ticket" and obj["family"] == "supertickets"
    again = load_ticket(out)
    io = sample_io(samples, name)
    assert torch.equal(again(io["x"]), ticket(io["x"]))
    assert again.sha256 == ticket.sha256
    with pytest.raises(DeployError, match="exists"):
        save_ticket(ticket, out)
