"""Relax IRModule -> model.so for a target, and checks that the file is what the board expects.

Every target links our kernels' objects into the library (cc.cross_compiler add_files): the CPU
kernels on llvm targets, the CUDA kernels (nvcc machine code, static CUDA runtime) on cuda, so
model.so loads with tvm.runtime.load_module alone. TVM's own kernels for the other ops on cuda:
the pip build of TVM 0.27 stores them as CUDA source in model.so (measured: the
tvm_callback_cuda_compile hook is not called at export), compiled for the GPU at first use
(st_deploy.runtime.runner registers the hook).
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path
from typing import Any

from ...artifact import TVM_LIBRARY
from ...errors import DeployError
from .cpu_schedule import schedule_cpu_ops
from .kernel_objects import kernel_objects
from .targets import TargetSpec

LIBRARY = TVM_LIBRARY
# Symbols every CPU artifact must define: the VM executable and the kernel entry points.
KERNEL_SYMBOLS = ("__tvm_ffi_conv2d_csr", "__tvm_ffi_conv2d_bsr", "__tvm_ffi_dwconv2d", "__tvm_ffi_dwconv2d_csr",
                  "__tvm_ffi_linear_csr", "__tvm_ffi_linear_dense", "__tvm_ffi_set_num_threads")
CUDA_KERNEL_SYMBOLS = ("__tvm_ffi_cuda_conv2d_csr", "__tvm_ffi_cuda_conv2d_bsr", "__tvm_ffi_cuda_dwconv2d",
                       "__tvm_ffi_cuda_dwconv2d_csr", "__tvm_ffi_cuda_linear_csr", "__tvm_ffi_cuda_linear_dense")
VM_SYMBOL = "__tvm_ffi__library_bin"
_EM = {"x86_64": 62, "aarch64": 183}


def compile_module(mod: Any, spec: TargetSpec) -> Any:
    """tvm.compile with the target's default Relax pipeline (DLight rules on cuda); on CPU targets
    the Relax ops get parallel loops first (cpu_schedule)."""
    import tvm
    target = spec.tvm_target()
    try:
        if not spec.gpu:
            mod = schedule_cpu_ops(mod, target)
        return tvm.compile(mod, target=target)
    except Exception as e:  # TVM raises its own error types; the last line says what failed
        raise DeployError(f"TVM could not compile the model for {spec.name}: "
                          f"{str(e).strip().splitlines()[-1]}") from None


def export(executable: Any, spec: TargetSpec, path: Path) -> None:
    from tvm.support import cc
    cuda_arch = str(spec.tvm["arch"]) if spec.gpu else None
    add_files = [str(p) for p in kernel_objects(spec.arch, spec.cxx, cuda_arch)] if spec.kernels else []
    options = ["-lpthread"]  # the kernels' thread pool
    if spec.gpu:
        options += ["-ldl", "-lrt"]  # CUDA's static runtime
    fcompile = cc.cross_compiler(spec.cxx, options=options, add_files=add_files)
    try:
        executable.export_library(str(path), fcompile=fcompile)
    except Exception as e:
        raise DeployError(f"linking {path.name} for {spec.name} with {spec.cxx} failed: "
                          f"{str(e).strip().splitlines()[-1]}") from None


def elf_info(path: Path) -> dict[str, Any]:
    """Machine and type of an ELF file, read from its header (no tools needed)."""
    head = path.read_bytes()[:64]
    if head[:4] != b"\x7fELF":
        raise DeployError(f"{path}: not an ELF file")
    little = head[5] == 1
    e_type, e_machine = struct.unpack("<HH" if little else ">HH", head[16:20])
    return {"class": {1: 32, 2: 64}.get(head[4]), "type": {2: "exec", 3: "shared"}.get(e_type, str(e_type)),
            "machine": {v: k for k, v in _EM.items()}.get(e_machine, str(e_machine))}


def dynamic_symbols(path: Path, nm: str = "nm") -> set[str]:
    r = subprocess.run([nm, "-D", "--defined-only", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise DeployError(f"{nm} could not read {path}: {r.stderr.strip()}")
    return {line.split()[-1] for line in r.stdout.splitlines() if line.strip()}


def check_library(path: Path, spec: TargetSpec) -> dict[str, Any]:
    """The artifact is a shared object for the target's CPU defining the VM and kernel symbols."""
    info = elf_info(path)
    if info["type"] != "shared" or info["machine"] != spec.arch or info["class"] != 64:
        raise AssertionError(f"{path.name}: built a {info} ELF for target {spec.name} ({spec.arch})")
    want = (VM_SYMBOL, *(CUDA_KERNEL_SYMBOLS if spec.gpu else KERNEL_SYMBOLS)) if spec.kernels else (VM_SYMBOL,)
    missing = [s for s in want if s not in dynamic_symbols(path)]
    if missing:
        raise AssertionError(f"{path.name} lacks symbols {missing}")
    return {**info, "symbols_checked": list(want)}
