"""Atomic writes: build under a temporary name next to the target, rename into place.

Temporaries are hidden siblings named after the writing process (.NAME.st-PID.XXXX.tmp, and
.NAME.old-PID while a folder is being replaced); a later write to the same NAME removes those of
processes that no longer exist (a writer killed with -9 cannot clean up after itself).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import DeployError

_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # file system or kernel without exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned(path: Path) -> None:
    """Delete temporaries next to `path` left by writers that were killed."""
    parent = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(re.escape(f".{path.name}.") + r"(?:st-(\d+)\..*\.tmp|old-(\d+))")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for p in entries:
        m = pattern.fullmatch(p.name)
        if m and not pid_alive(int(m.group(1) or m.group(2))):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _make_parent(path: Path) -> list[Path]:
    """Create the missing folders above `path`, as mkdir -p does; return those created, innermost first."""
    parent = path.parent if str(path.parent) else Path(".")
    missing = []
    p = parent
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:  # a file where a folder should be, no permission, ...
        raise DeployError(f"{path}: cannot create folder {parent} ({e.strerror or e})") from None
    if not parent.is_dir():
        raise DeployError(f"{path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise DeployError(f"{path}: folder {parent} is not writable")
    return missing


@contextlib.contextmanager
def _parent_folder(path: Path) -> Iterator[None]:
    """Missing folders above `path` made as by mkdir -p; if the write inside fails, those made here
    are removed again (while still empty: os.rmdir), so a failed write leaves nothing behind."""
    made = _make_parent(path)
    try:
        yield
    except BaseException:
        for d in made:
            try:
                os.rmdir(d)
            except OSError:  # another writer's file landed in it meanwhile
                break
        raise


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary file path; on success it replaces `path` in one rename."""
    with _parent_folder(path):
        _remove_abandoned(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.st-{os.getpid()}.", suffix=".tmp", dir=path.parent or ".")
        os.close(fd)
        try:
            yield Path(tmp)
            # mkstemp makes the file private (0600); a written ticket or result is meant to be shared
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except OSError as e:
            raise DeployError(f"{path}: could not write ({e.strerror or e})") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it takes the place of `path` (old one removed)."""
    if path.exists() and not force:
        raise DeployError(f"{path}: exists (pass --force to overwrite)")
    if path.exists() and not path.is_dir():
        raise DeployError(f"{path}: exists and is not a folder")
    with _parent_folder(path):
        _remove_abandoned(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.st-{os.getpid()}.", suffix=".tmp", dir=path.parent or "."))
        try:
            yield tmp
            if not path.exists():
                os.replace(tmp, path)
            elif _exchange(tmp, path):
                # path is the new folder now and tmp holds the old one, removed below: at no moment
                # is there nothing under the requested name
                pass
            else:  # no atomic exchange here: a short window in which path is absent
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
        except OSError as e:
            raise DeployError(f"{path}: could not write ({e.strerror or e})") from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
