"""Our kernels compiled for one target, as files to link into a TVM model.so.

model.so must be self-contained (nothing to install or register on the board), so the kernels'
object code goes into it. CPU targets: the static kernel core (kernels/CMakeLists.txt target
st_kernels_core, with its per-ISA variants: AVX-512/AVX2/scalar on x86_64, NEON/scalar on
aarch64) plus the tvm-ffi wrappers of kernels/api/ffi.cc. cuda: the CUDA core (st_kernels_cuda_core,
nvcc, machine code for the target's sm_XX plus its PTX), the CPU core whose pattern checks it
reuses, CUDA's static runtime, and the wrappers of kernels/api/ffi_cuda.cc. The Relax VM finds
the wrappers as the library's own symbols (conv2d_csr, cuda_conv2d_csr, ...), so their global
registrations are compiled out (-DST_KERNELS_FFI_NO_GLOBALS): two model.so files (or one next
to libst_kernels.so) in one process would otherwise register "st_deploy.*" twice, which tvm-ffi
answers with an abort.

Builds are cached under ~/.cache/st-deploy/tvm-kernels/<arch>[-cuda-sm_XX]-<hash of the sources
and compilers>.
"""

from __future__ import annotations

import hashlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...cache import cache_dir
from ...errors import DeployError

_TOOLCHAIN = """\
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER {cxx})
"""
KEEP_PER_ARCH = 3  # cache entries kept per architecture (older kernel sources are dropped)


def kernel_sources() -> Path:
    """The kernels/ folder of the st-deploy source tree (needed to link kernels into model.so)."""
    from ...runtime.libpath import candidates
    # A source checkout first, then the copy `pip install .` puts in st_deploy/_lib/kernels_src.
    roots = [Path(__file__).resolve().parents[3] / "kernels", *candidates("kernels_src")]
    for root in roots:
        if (root / "CMakeLists.txt").is_file() and (root / "api" / "ffi.cc").is_file():
            return root
    raise DeployError(f"TVM export links our kernels into model.so from their sources, but none of "
                      f"{', '.join(map(str, roots))} holds them: reinstall st-deploy with `pip install .`")


def _cache_root() -> Path:
    return cache_dir() / "tvm-kernels"


def _digest(src: Path, compilers: list[str]) -> str:
    import tvm_ffi
    h = hashlib.sha256()
    for p in sorted(src.rglob("*")):
        if p.is_file() and p.suffix in (".cc", ".h", ".inc", ".txt", ".cu", ".cuh") \
                and "ort" not in p.relative_to(src).parts:
            h.update(str(p.relative_to(src)).encode())
            h.update(p.read_bytes())
    vers = [subprocess.run([c, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1:]
            for c in compilers]
    h.update(repr((compilers, vers, tvm_ffi.__version__, _TOOLCHAIN)).encode())
    return h.hexdigest()[:16]


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise DeployError(f"building our kernels for the TVM export failed at {what}:\n{tail}")


def kernel_objects(arch: str, cxx: str, cuda_arch: str | None = None) -> list[Path]:
    """Files to link into model.so, built once and cached.

    CPU (cuda_arch None): [ffi.o, libst_kernels_core.a] for `arch` ("x86_64" or "aarch64").
    cuda (cuda_arch "sm_XX"): [ffi_cuda.o, libst_kernels_cuda_core.a, libst_kernels_core.a,
    libcudart_static.a]; link with -ldl -lrt -lpthread.
    """
    if shutil.which("cmake") is None:
        raise DeployError("TVM export builds our kernels with cmake, which is not on PATH")
    src = kernel_sources()
    if cuda_arch is not None:
        from .targets import find_nvcc
        nvcc = find_nvcc()
        m = re.fullmatch(r"sm_(\d+)[a-z]?", cuda_arch)
        if nvcc is None or m is None:
            raise DeployError(f"building our CUDA kernels for {cuda_arch} needs nvcc and an arch like sm_80")
        key, compilers = f"{arch}-cuda-{cuda_arch}", [cxx, nvcc]
        names = ["ffi_cuda.o", "libst_kernels_cuda_core.a", "libst_kernels_core.a", "libcudart_static.a"]
    else:
        key, compilers = arch, [cxx]
        names = ["ffi.o", "libst_kernels_core.a"]
    dest = _cache_root() / f"{key}-{_digest(src, compilers)}"
    files = [dest / n for n in names]
    if all(f.is_file() for f in files):
        return files
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Concurrent exports (several processes, a parallel test run) wait for one build instead of
    # each compiling the same objects for minutes; the kernel drops the lock if its holder dies.
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(f.is_file() for f in files):
            return files
        _build(src, dest, files, arch, cxx, cuda_arch, compilers)
    _prune(dest.parent, key)
    return files


def _build(src: Path, dest: Path, files: list[Path], arch: str, cxx: str, cuda_arch: str | None,
           compilers: list[str]) -> None:
    import tvm_ffi.libinfo

    names = [f.name for f in files]
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    build = tmp / "build"
    try:
        cmake = ["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DST_KERNELS_FFI=OFF"]
        targets = ["st_kernels_core"]
        if cuda_arch is not None:
            # The CPU core is the CPU entry's (same sources, compiler and flags; built now if not
            # cached): minutes of compiling each CUDA arch would otherwise repeat.
            shutil.copy(kernel_objects(arch, cxx)[1], tmp / "libst_kernels_core.a")
            sm = re.fullmatch(r"sm_(\d+)[a-z]?", cuda_arch).group(1)  # checked by kernel_objects
            cmake += ["-DST_KERNELS_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={sm}",
                      f"-DCMAKE_CUDA_COMPILER={compilers[1]}",
                      f"-DST_KERNELS_CORE_PREBUILT={tmp / 'libst_kernels_core.a'}"]
            targets = ["st_kernels_cuda_core"]
        else:
            cmake.append("-DST_KERNELS_CUDA=OFF")
        if cxx != "g++":
            (tmp / "toolchain.cmake").write_text(_TOOLCHAIN.format(cxx=cxx))
            cmake.append(f"-DCMAKE_TOOLCHAIN_FILE={tmp / 'toolchain.cmake'}")
        _run(cmake, "cmake configure")
        # Only the static cores: the shared st_kernels targets link this machine's libtvm_ffi.so.
        _run(["cmake", "--build", str(build), "--target", *targets, "-j", str(os.cpu_count() or 1)],
             f"cmake --build {' '.join(targets)}")
        inc = [f"-I{p}" for p in (tvm_ffi.libinfo.find_include_path(), tvm_ffi.libinfo.find_dlpack_include_path())]
        ffi = "ffi_cuda" if cuda_arch is not None else "ffi"
        _run([cxx, "-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden", "-DST_KERNELS_FFI_NO_GLOBALS", *inc,
              "-c", str(src / "api" / f"{ffi}.cc"), "-o", str(tmp / f"{ffi}.o")], f"compiling kernels/api/{ffi}.cc")
        for lib in names[1:]:
            if lib == "libcudart_static.a":
                shutil.copy(_cmake_cache_path(build, "CUDA_cudart_static_LIBRARY"), tmp / lib)
            elif not (tmp / lib).is_file():
                shutil.copy(build / lib, tmp / lib)
        shutil.rmtree(build)
        try:
            os.replace(tmp, dest)
        except OSError:  # another export built the same cache entry meanwhile
            if not all(f.is_file() for f in files):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _cmake_cache_path(build: Path, name: str) -> Path:
    """A FILEPATH entry of build/CMakeCache.txt (e.g. the CUDA static runtime FindCUDAToolkit found)."""
    for line in (build / "CMakeCache.txt").read_text().splitlines():
        if line.startswith(f"{name}:"):
            path = Path(line.split("=", 1)[1])
            if path.is_file():
                return path
    raise DeployError(f"building our CUDA kernels: cmake found no {name} (is the CUDA toolkit complete?)")


def _prune(root: Path, key: str) -> None:
    """Drop all but the newest KEEP_PER_ARCH builds of `key`, and builds abandoned over a day ago."""
    import time
    pattern = re.compile(re.escape(key) + r"-[0-9a-f]{16}")
    done = sorted((p for p in root.iterdir() if p.is_dir() and pattern.fullmatch(p.name)),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    stale = [p for p in root.glob(f".{key}-*") if p.is_dir() and time.time() - p.stat().st_mtime > 86400]
    for p in done[KEEP_PER_ARCH:] + stale:
        shutil.rmtree(p, ignore_errors=True)
