"""Our CPU kernels compiled for one architecture, as files to link into a TVM model.so.

model.so must be self-contained (nothing to install or register on the board), so the kernels'
object code goes into it: the static kernel core (kernels/CMakeLists.txt target st_kernels_core,
with its per-ISA variants: AVX-512/AVX2/scalar on x86_64, NEON/scalar on aarch64) plus the tvm-ffi
wrappers of kernels/api/ffi.cc. The Relax VM finds those wrappers as the library's own symbols
(conv2d_csr, ...), so the global registrations in ffi.cc are compiled out: two model.so files (or
one next to libst_kernels.so) in one process would otherwise register "st_deploy.*" twice, which
tvm-ffi answers with an abort.

Builds are cached under ~/.cache/st-deploy/tvm-kernels/<arch>-<hash of the sources and compiler>.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...errors import DeployError

# Replaces TVM_FFI_STATIC_INIT_BLOCK with an unused function (see the module docstring).
_PRELUDE = """\
#include <tvm/ffi/base_detail.h>
#undef TVM_FFI_STATIC_INIT_BLOCK
#define TVM_FFI_STATIC_INIT_BLOCK() [[maybe_unused]] static void st_deploy_tvm_export_no_globals_()
"""
_TOOLCHAIN = """\
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER {cxx})
"""
CACHE_ENV = "ST_DEPLOY_CACHE"
KEEP_PER_ARCH = 3  # cache entries kept per architecture (older kernel sources are dropped)


def kernel_sources() -> Path:
    """The kernels/ folder of the st-deploy source tree (needed to link kernels into model.so)."""
    from ...libpath import candidates
    # A source checkout first, then the copy `pip install .` puts in st_deploy/_lib/kernels_src.
    roots = [Path(__file__).resolve().parents[3] / "kernels", *candidates("kernels_src")]
    for root in roots:
        if (root / "CMakeLists.txt").is_file() and (root / "api" / "ffi.cc").is_file():
            return root
    raise DeployError(f"TVM export links our kernels into model.so from their sources, but none of "
                      f"{', '.join(map(str, roots))} holds them: reinstall st-deploy with `pip install .`")


def _cache_root() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "st-deploy")
    return Path(base) / "tvm-kernels"


def _digest(src: Path, cxx: str) -> str:
    import tvm_ffi
    h = hashlib.sha256()
    for p in sorted(src.rglob("*")):
        if p.is_file() and p.suffix in (".cc", ".h", ".inc", ".txt") and "ort" not in p.relative_to(src).parts:
            h.update(str(p.relative_to(src)).encode())
            h.update(p.read_bytes())
    ver = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    h.update(repr((cxx, ver, tvm_ffi.__version__, _PRELUDE, _TOOLCHAIN)).encode())
    return h.hexdigest()[:16]


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise DeployError(f"building our kernels for the TVM export failed at {what}:\n{tail}")


def kernel_objects(arch: str, cxx: str) -> list[Path]:
    """[ffi.o, libst_kernels_core.a] for `arch` ("x86_64" or "aarch64"), built once and cached."""
    import tvm_ffi.libinfo

    if shutil.which("cmake") is None:
        raise DeployError("TVM export builds our kernels with cmake, which is not on PATH")
    src = kernel_sources()
    dest = _cache_root() / f"{arch}-{_digest(src, cxx)}"
    files = [dest / "ffi.o", dest / "libst_kernels_core.a"]
    if all(f.is_file() for f in files):
        return files
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        cmake = ["cmake", "-S", str(src), "-B", str(tmp / "build"), "-DCMAKE_BUILD_TYPE=Release"]
        if cxx != "g++":
            (tmp / "toolchain.cmake").write_text(_TOOLCHAIN.format(cxx=cxx))
            cmake.append(f"-DCMAKE_TOOLCHAIN_FILE={tmp / 'toolchain.cmake'}")
        _run(cmake, "cmake configure")
        # Only the static core: the shared st_kernels target links this machine's libtvm_ffi.so.
        _run(["cmake", "--build", str(tmp / "build"), "--target", "st_kernels_core", "-j", str(os.cpu_count() or 1)],
             "cmake --build st_kernels_core")
        (tmp / "prelude.h").write_text(_PRELUDE)
        inc = [f"-I{p}" for p in (tvm_ffi.libinfo.find_include_path(), tvm_ffi.libinfo.find_dlpack_include_path())]
        _run([cxx, "-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden", *inc, "-include", str(tmp / "prelude.h"),
              "-c", str(src / "api" / "ffi.cc"), "-o", str(tmp / "ffi.o")], "compiling kernels/api/ffi.cc")
        shutil.copy(tmp / "build" / "libst_kernels_core.a", tmp / "libst_kernels_core.a")
        shutil.rmtree(tmp / "build")
        try:
            os.replace(tmp, dest)
        except OSError:  # another export built the same cache entry meanwhile
            if not all(f.is_file() for f in files):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _prune(dest.parent, arch)
    return files


def _prune(root: Path, arch: str) -> None:
    """Drop all but the newest KEEP_PER_ARCH builds of `arch`, and builds abandoned over a day ago."""
    import time
    done = sorted((p for p in root.glob(f"{arch}-*") if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    stale = [p for p in root.glob(f".{arch}-*") if p.is_dir() and time.time() - p.stat().st_mtime > 86400]
    for p in done[KEEP_PER_ARCH:] + stale:
        shutil.rmtree(p, ignore_errors=True)
