"""The emulated board's root filesystem, built without privileges and cached.

Debian bookworm arm64's Python (python3.11-minimal, libpython3.11-stdlib, libstdc++6 and what
they depend on) comes from a private apt configuration: apt-get resolves and downloads the .debs
with an empty package database of its own, and dpkg-deb -x unpacks them. No chroot, no
debootstrap second stage, no binfmt_misc: qemu-aarch64 -L ROOT runs the board's binaries.
TVM and its Python dependencies are the PyPI aarch64 wheels of the host's own versions (the RPC
protocol must match), unpacked into ROOT/usr/local/lib/python3.11/dist-packages. TVM's compiler
library (libtvm_compiler.so, 240 MB) is left out: a board only loads and runs modules.

The folder is built under a temporary name and renamed into place, so a killed build leaves no
half root; the next build removes temporaries of builds whose process is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Iterator

from ..cache import cache_dir
from ..errors import DeployError
from ..io.atomic import pid_alive

RECIPE = 1  # bump when what goes into the root changes
SUITE = "bookworm"
BOARD_PYTHON = "3.11"
DEBS = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6")
# The host's versions of these are installed on the board; the rest at their newest aarch64 wheels.
PINNED = ("apache-tvm", "apache-tvm-ffi", "numpy")
UNPINNED = ("cloudpickle", "psutil")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
MIRROR_ENV = "ST_DEPLOY_DEBIAN_MIRROR"
BOARDS_ENV = "ST_DEPLOY_BOARDS"
INFO_FILE = "st-deploy-board.json"
SITE = f"usr/local/lib/python{BOARD_PYTHON}/dist-packages"


def boards_dir() -> Path:
    """Where built roots live: $ST_DEPLOY_BOARDS, else the st-deploy cache's boards/ folder."""
    return Path(os.environ.get(BOARDS_ENV) or cache_dir() / "boards")


def pinned_versions() -> dict[str, str]:
    out = {}
    for name in PINNED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise DeployError(f"the emulated board installs the host's {name} version, but {name} is not "
                              f"installed here (pip install {name})") from None
    return out


def rootfs_key(arch: str = "aarch64") -> str:
    v = pinned_versions()
    return f"{arch}-{SUITE}-py{BOARD_PYTHON}-tvm{v['apache-tvm']}-ffi{v['apache-tvm-ffi']}-r{RECIPE}"


def board_python(root: Path) -> Path:
    return Path(root) / "usr" / "bin" / f"python{BOARD_PYTHON}"


def missing_tools() -> list[str]:
    """What the privilege-free build needs and this machine lacks, each with how to get it."""
    need = {"qemu-aarch64": "qemu-user (apt-get install qemu-user)",
            "apt-get": "apt-get (a Debian/Ubuntu host)",
            "dpkg-deb": "dpkg-deb (package dpkg)"}
    out = [why for tool, why in need.items() if shutil.which(tool) is None]
    if not KEYRING.is_file():
        out.append(f"{KEYRING} (apt-get install debian-archive-keyring)")
    return out


def check_rootfs(root: Path) -> None:
    """A usable board root has the board's Python and TVM in its site-packages."""
    root = Path(root)
    if not board_python(root).is_file():
        raise DeployError(f"--rootfs {root}: no {board_python(root).relative_to(root)} (an aarch64 Debian "
                          f"{SUITE} root with Python {BOARD_PYTHON}; st-deploy board builds one when --rootfs is omitted)")
    if not (root / SITE / "tvm" / "__init__.py").is_file():
        raise DeployError(f"--rootfs {root}: no TVM in {SITE} (pip install --target ROOT/{SITE} --platform "
                          f"manylinux2014_aarch64 --only-binary=:all: apache-tvm)")


def ensure_rootfs(arch: str = "aarch64", log=print) -> Path:
    """The cached root for `arch`, built on first use (about a minute and 220 MB here)."""
    if arch != "aarch64":
        raise DeployError(f"--emulate {arch!r}: only aarch64 boards can be emulated")
    base = boards_dir()
    root = base / rootfs_key(arch)
    if (root / INFO_FILE).is_file():
        return root
    missing = missing_tools()
    if missing:
        raise DeployError("cannot build the emulated board's root filesystem: missing " + "; ".join(missing))
    base.mkdir(parents=True, exist_ok=True)
    with _lock(base / f".{root.name}.lock"):
        if (root / INFO_FILE).is_file():  # another process built it while we waited
            return root
        _remove_abandoned(base, root.name)
        tmp = base / f".{root.name}.build-{os.getpid()}"
        try:
            log(f"building the emulated {arch} board's root filesystem in {root} (once)")
            info = _build(tmp, log)
            (tmp / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
            os.rename(tmp, root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return root


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_abandoned(base: Path, name: str) -> None:
    """Temporaries of builds that were killed (their process no longer exists)."""
    for p in base.glob(f".{name}.build-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _run(cmd: list[str], what: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise DeployError(f"{what} failed (exit {r.returncode}): {' | '.join(tail)[:400]}")
    return r.stdout


def _build(root: Path, log) -> dict:
    root.mkdir(parents=True)
    mirror = os.environ.get(MIRROR_ENV, "http://deb.debian.org/debian")
    with tempfile.TemporaryDirectory(prefix="st-board-apt-") as d:
        debs = _download_debs(Path(d), mirror)
        log(f"unpacking {len(debs)} Debian arm64 packages")
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}")
        versions = {deb.name.split("_")[0]: deb.name.split("_")[1] for deb in debs}
    wheels = _install_wheels(root / SITE, log)
    # The board loads and runs modules; the compiler is 240 MB it never uses.
    compiler = root / SITE / "tvm" / "lib" / "libtvm_compiler.so"
    compiler.unlink(missing_ok=True)
    shutil.rmtree(root / SITE / "bin", ignore_errors=True)
    return {"arch": "aarch64", "suite": SUITE, "mirror": mirror, "recipe": RECIPE, "debs": versions,
            "wheels": wheels, "tvm_compiler": "left out (runtime only)"}


def _download_debs(work: Path, mirror: str) -> list[Path]:
    """Resolve and download the .debs with an apt configuration of our own (no root, no system state)."""
    for sub in ("state/lists/partial", "cache/archives/partial"):
        (work / sub).mkdir(parents=True)
    (work / "state" / "status").touch()
    sources = work / "sources.list"
    sources.write_text(f"deb [arch=arm64 signed-by={KEYRING}] {mirror} {SUITE} main\n")
    opts = [f"-oDir::Etc::SourceList={sources}", "-oDir::Etc::SourceParts=/nonexistent",
            f"-oDir::State={work / 'state'}", f"-oDir::State::status={work / 'state' / 'status'}",
            f"-oDir::Cache={work / 'cache'}", "-oAPT::Architecture=arm64", "-oAPT::Architectures=arm64",
            "-oDebug::NoLocking=1", "-oAPT::Install-Recommends=false",
            # apt drops to user _apt for downloads; our folders belong to whoever runs this.
            f"-oAPT::Sandbox::User={pwd.getpwuid(os.geteuid()).pw_name}"]
    _run(["apt-get", "-q", *opts, "update"], f"apt-get update (arm64 {SUITE} from {mirror})")
    _run(["apt-get", "-q", "-y", *opts, "install", "--download-only", *DEBS],
         f"apt-get download of {' '.join(DEBS)}")
    debs = sorted((work / "cache" / "archives").glob("*.deb"))
    if not debs:
        raise DeployError(f"apt-get downloaded no packages from {mirror}")
    return debs


def _install_wheels(site: Path, log) -> dict[str, str]:
    pins = pinned_versions()
    reqs = [f"{n}=={v}" for n, v in pins.items()] + list(UNPINNED)
    log(f"installing aarch64 wheels: {' '.join(reqs)}")
    py = BOARD_PYTHON.replace(".", "")
    _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-warn-conflicts",
          "--target", str(site), "--only-binary=:all:", "--python-version", BOARD_PYTHON,
          "--implementation", "cp", "--abi", f"cp{py}", "--abi", "abi3", "--abi", "none",
          "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_17_aarch64",
          "--platform", "manylinux_2_28_aarch64", *reqs], "pip install of the board's aarch64 wheels")
    out = {}
    for info in site.glob("*.dist-info"):
        name, _, version = info.name[:-len(".dist-info")].partition("-")
        out[name] = version
    return out
