"""Writes are atomic: kill -9 mid-write leaves the old artifact or nothing under the name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from st_deploy import DeployError, load_ticket, save_ticket
from st_deploy.loaders.atomic import atomic_dir


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "st_deploy", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0, 5.0])
def test_kill_during_example_and_pack(tmp_path, delay):
    """A child writing the example folder (then packing it) is killed at various moments."""
    folder = tmp_path / "ex"
    child = _spawn("example", "-o", str(folder), "--seed", "1")
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    if folder.exists():  # the rename happened: the folder is complete
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted(f"supertickets_imagenet_g0.9{s}" for s in (".json", ".state_dict", ".yml"))
        load_ticket(folder / "supertickets_imagenet_g0.9.state_dict")
    leftovers = [p for p in tmp_path.iterdir() if p.name != "ex"]
    assert all(p.name.startswith(".ex.") for p in leftovers)  # only hidden temporaries, never "ex"


def test_kill_during_pack_keeps_old_file(tmp_path, example_ticket):
    out = tmp_path / "ticket.pt"
    ticket = load_ticket(example_ticket)
    save_ticket(ticket, out)
    before = out.read_bytes()
    for delay in (0.3, 1.0, 2.0):
        child = _spawn("pack", str(example_ticket), "-o", str(out), "--force")
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert out.read_bytes() == before or load_ticket(out).name == ticket.name
        assert torch.load(out, weights_only=True)["format"] == "st-deploy-ticket"


def test_existing_output_needs_force(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(DeployError, match="--force"):
        with atomic_dir(tmp_path / "out"):
            pass


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(DeployError, match="not writable"):
        with atomic_dir(ro / "out"):
            pass


def test_missing_parent_folders_are_made(tmp_path):
    """Missing parents are made as by mkdir -p (issue #23); a file in their way is a clear error."""
    with atomic_dir(tmp_path / "missing" / "deep" / "out") as tmp:
        (tmp / "f").write_text("x")
    assert (tmp_path / "missing" / "deep" / "out" / "f").read_text() == "x"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DeployError, match="cannot create folder"):
        with atomic_dir(tmp_path / "file" / "sub" / "out"):
            pass


def test_disk_full(tmp_path):
    """/dev/full fails every write with ENOSPC: a clear error, nothing half-written."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    from st_deploy.loaders.atomic import atomic_path
    target = tmp_path / "t.pt"
    with pytest.raises(DeployError, match="could not write"):
        with atomic_path(target) as tmp:
            with open("/dev/full", "wb") as f:
                f.write(b"x" * 65536)
                f.flush()
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_atomic_file_gets_the_umask_permissions_not_the_temporary_private_ones(tmp_path):
    import os

    from st_deploy.loaders.atomic import atomic_path
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as t:
            t.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
