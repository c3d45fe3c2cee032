"""Writes are atomic: kill -9 mid-write leaves the old artifact or nothing under the name."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from st_deploy import DeployError, load_ticket, save_ticket
from st_deploy.io.atomic import atomic_dir, atomic_path


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "st_deploy", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _temporaries(folder: Path, name: str, pid: int) -> list[Path]:
    """The hidden temporaries of writer `pid` for `name` (atomic_path / atomic_dir naming)."""
    return [p for p in folder.iterdir() if p.name.startswith(f".{name}.st-{pid}.")]


def _size(p: Path) -> int:
    try:
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    except FileNotFoundError:  # renamed into place between the listing and the stat
        return -1


def _kill_mid_write(child: subprocess.Popen, folder: Path, name: str, min_bytes: int,
                    limit: float = 600) -> Path:
    """SIGKILL the child once its temporary for `name` holds at least `min_bytes` bytes; returns
    that temporary. Fails when the child ends, or the limit passes, without such a temporary: a
    writer that never writes through a hidden temporary cannot pass."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if child.poll() is not None:
            pytest.fail(f"the writer exited ({child.returncode}) before a temporary of {name} "
                        f"with {min_bytes} bytes was seen")
        tmps = _temporaries(folder, name, child.pid)
        if tmps and _size(tmps[0]) >= min_bytes:
            child.send_signal(signal.SIGKILL)  # our own child, by its pid
            child.wait(60)
            return tmps[0]
        time.sleep(0.001)
    child.kill()
    child.wait(60)
    pytest.fail(f"no temporary of {name} within {limit}s")


EXAMPLE_FILES = sorted(f"supertickets_imagenet_g0.9{s}" for s in (".json", ".state_dict", ".yml"))


def test_kill_during_example(tmp_path):
    """`st-deploy example` is killed once the 100 MB state_dict in its hidden temporary folder is
    partly written: the kill must land mid-write (the dead writer's temporary is still there) and
    leave nothing under the name; the next write to the name removes the dead one's temporary."""
    folder = tmp_path / "ex"
    child = _spawn("example", "-o", str(folder), "--seed", "1")
    tmp = _kill_mid_write(child, tmp_path, "ex", 1 << 20)
    assert tmp.is_dir() and not folder.exists(), "the kill did not land mid-write"
    assert sorted(p.name for p in tmp_path.iterdir()) == [tmp.name]
    assert any(f.name.endswith(".state_dict") for f in tmp.iterdir())
    with atomic_dir(folder) as new:  # the next writer (what make_example does, without the model)
        (new / "x.yml").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ex"]
    assert sorted(p.name for p in folder.iterdir()) == ["x.yml"]


def test_kill_during_pack_keeps_old_file(tmp_path, example_ticket):
    """`st-deploy pack --force` over an existing ticket.pt is killed when its temporary appears and
    (another run) when it is partly written: each kill lands mid-write and leaves the old file
    byte for byte, and each later writer removes the dead one's temporary."""
    out = tmp_path / "ticket.pt"
    ticket = load_ticket(example_ticket)
    save_ticket(ticket, out)
    before = out.read_bytes()
    for min_bytes in (0, 1 << 20):
        child = _spawn("pack", str(example_ticket), "-o", str(out), "--force")
        tmp = _kill_mid_write(child, tmp_path, out.name, min_bytes)
        assert tmp.is_file(), "the kill did not land mid-write"
        assert out.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([tmp.name, out.name])
    save_ticket(ticket, out, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["ticket.pt"]
    assert torch.load(out, weights_only=True)["format"] == "st-deploy-ticket"
    assert load_ticket(out).name == ticket.name


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


NOBODY = 65534

_READ_ONLY_CHILD = """
import os, sys
from pathlib import Path
from st_deploy import DeployError
from st_deploy.io.atomic import atomic_dir
if os.geteuid() == 0:  # drop to an unprivileged user after the imports (the interpreter may sit in /root)
    os.setgroups([])
    os.setresgid({uid}, {uid}, {uid})
    os.setresuid({uid}, {uid}, {uid})
    assert os.geteuid() == {uid} and os.getegid() == {uid}
base = Path(sys.argv[1])
with atomic_dir(base / "writable" / "out") as tmp:  # the same user can write where permitted
    (tmp / "f").write_text("x")
assert (base / "writable" / "out" / "f").read_text() == "x"
try:
    with atomic_dir(base / "ro" / "out"):
        pass
except DeployError as e:
    print(e)
    sys.exit(0 if "not writable" in str(e) else 1)
print("no error for a read-only folder")
sys.exit(1)
"""


def test_read_only_folder():
    """A read-only parent folder is a clear error. Root ignores permission bits, so as root the
    check runs in a child that drops to uid/gid 65534 (nobody); as any other user, as that user."""
    uid = NOBODY if os.geteuid() == 0 else os.geteuid()
    base = Path(tempfile.mkdtemp(prefix="st-ro-"))  # not under pytest's 0700 folder: nobody must reach it
    try:
        base.chmod(0o755)
        (base / "ro").mkdir(mode=0o755)
        (base / "ro").chmod(0o555)
        (base / "writable").mkdir()
        if os.geteuid() == 0:
            os.chown(base / "writable", uid, uid)
        r = subprocess.run([sys.executable, "-c", _READ_ONLY_CHILD.format(uid=uid), str(base)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr[-3000:]
        assert "not writable" in r.stdout
        assert sorted(p.name for p in (base / "ro").iterdir()) == []
    finally:
        (base / "ro").chmod(0o755)
        shutil.rmtree(base)


def test_missing_parent_folders_are_made(tmp_path):
    """Missing parents are made as by mkdir -p (issue #23); a file in their way is a clear error."""
    with atomic_dir(tmp_path / "missing" / "deep" / "out") as tmp:
        (tmp / "f").write_text("x")
    assert (tmp_path / "missing" / "deep" / "out" / "f").read_text() == "x"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DeployError, match="cannot create folder"):
        with atomic_dir(tmp_path / "file" / "sub" / "out"):
            pass


_FULL_CHILD = """
import resource, signal, sys
from pathlib import Path
# Writes past 64 KiB fail with EFBIG, as a full disk fails them with ENOSPC: the same OSError in
# the writer, raised while it fills the atomic writer's own temporary file.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
from st_deploy import DeployError
from st_deploy.bench.output import write_json
from st_deploy.loaders import load_ticket, save_ticket
out = Path(sys.argv[1])
try:
    write_json({{"records": ["x" * 1000] * 200}}, out / "result.json")
    print("result.json: no error")
except DeployError as e:
    print("result.json:", e)
try:
    save_ticket(load_ticket(sys.argv[2]), out / "ticket.pt", force=True)
    print("ticket.pt: no error")
except DeployError as e:
    print("ticket.pt:", e)
"""


def test_disk_full(tmp_path, example_ticket):
    """A write that fails part-way through the atomic writer's temporary (the file size limit
    stands in for a full disk) is a clear error, leaves the previous file as it was and no
    temporary behind: for a JSON result and for a packed ticket (torch.save)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text("previous result")
    (out / "ticket.pt").write_bytes(b"previous ticket")
    r = subprocess.run([sys.executable, "-c", _FULL_CHILD.format(), str(out), str(example_ticket)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith(f"result.json: {out / 'result.json'}: could not write ("), r.stdout
    assert lines[1].startswith(f"ticket.pt: {out / 'ticket.pt'}: could not write ("), r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["result.json", "ticket.pt"]
    assert (out / "result.json").read_text() == "previous result"
    assert (out / "ticket.pt").read_bytes() == b"previous ticket"


def test_atomic_dir_without_exchange(tmp_path, monkeypatch):
    """A file system or kernel without renameat2 RENAME_EXCHANGE: atomic_dir moves the old folder
    aside, renames the new one in, and removes the old one; nothing else is left."""
    from st_deploy.io import atomic
    art = tmp_path / "art"
    art.mkdir()
    (art / "old.txt").write_text("old")
    calls = []
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: calls.append((a, b)) or False)
    with atomic.atomic_dir(art, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert len(calls) == 1 and calls[0][1] == art  # the fallback ran, not the first-write rename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    assert sorted(p.name for p in art.iterdir()) == ["new.txt"]
    assert (art / "new.txt").read_text() == "new"


def test_atomic_file_gets_the_umask_permissions_not_the_temporary_private_ones(tmp_path):
    import os

    from st_deploy.io.atomic import atomic_path
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as t:
            t.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
