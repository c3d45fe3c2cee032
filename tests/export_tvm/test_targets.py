"""Targets: friendly names and TVM dicts, aarch64 cross-compilation, the cuda build."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import manifest
from st_deploy.errors import DeployError
from st_deploy.export.tvm import export_tvm, resolve_target
from st_deploy.export.tvm.build import dynamic_symbols, elf_info
from st_deploy.export.tvm.targets import AARCH64_CXX, find_nvcc

SHAPE = (1, 3, 32, 32)
needs_cross = pytest.mark.skipif(shutil.which(AARCH64_CXX) is None,
                                 reason=f"{AARCH64_CXX} absent (apt-get install g++-aarch64-linux-gnu)")


def test_llvm_is_this_cpu_not_generic():
    import tvm
    spec = resolve_target("llvm")
    assert spec.tvm["mcpu"] == tvm.target.codegen.llvm_get_system_cpu() and spec.host_runnable


def test_friendly_names_and_dicts():
    assert resolve_target("rasp4").tvm["mcpu"] == "cortex-a72" if shutil.which(AARCH64_CXX) else True
    assert resolve_target("cuda").tvm["arch"] == "sm_80"
    assert resolve_target("cuda --arch sm_90").tvm["arch"] == "sm_90"
    d = {"kind": "llvm", "mcpu": "skylake-avx512"}
    assert resolve_target(d).tvm == d and resolve_target(json.dumps(d)).arch == "x86_64"


@pytest.mark.parametrize("bad", ["vulkan", "llvm -mcpu=native", "{not json", {"kind": "opencl"},
                                 {"kind": "llvm", "mtriple": "riscv64-linux-gnu"}, "cuda --arch 80"])
def test_bad_targets_are_deploy_errors(bad):
    with pytest.raises(DeployError):
        resolve_target(bad)


@needs_cross
@pytest.mark.parametrize("target", ["aarch64", "rasp4"])
def test_aarch64_export_is_an_arm_shared_object_with_kernels(every_op, tmp_path, target):
    out = export_tvm(every_op, target, tmp_path / target, input_shape=SHAPE)
    so = out / "model.so"
    assert elf_info(so) == {"class": 64, "type": "shared", "machine": "aarch64"}
    syms = dynamic_symbols(so, "aarch64-linux-gnu-nm" if shutil.which("aarch64-linux-gnu-nm") else "nm")
    assert {"__tvm_ffi__library_bin", "__tvm_ffi_conv2d_csr", "__tvm_ffi_dwconv2d_csr", "st_conv2d_csr"} <= syms
    # the NEON variants are linked in (kernels.inc: *-neon built only for arm)
    assert b"neon" in so.read_bytes()
    m = manifest(out)
    assert m["target"]["arch"] == "aarch64" and m["target"]["tvm"]["mtriple"] == "aarch64-linux-gnu"
    assert "not run" in m["fidelity"]["measured_on"] and m["fidelity"]["rel"] <= 1e-5


@pytest.mark.skipif(find_nvcc() is None, reason="nvcc absent: the cuda build is checked where a CUDA toolkit exists")
def test_cuda_builds_and_says_sparse_layers_run_dense(every_op, tmp_path):
    out = export_tvm(every_op, "cuda --arch sm_86", tmp_path / "cuda", input_shape=SHAPE)
    m = manifest(out)
    assert m["target"]["tvm"]["kind"] == "cuda" and m["target"]["tvm"]["arch"] == "sm_86"
    assert elf_info(out / "model.so")["type"] == "shared"
    sparse_planned = [lp for lp in m["plan"]["layers"] if lp["format"] != "dense"]
    assert sparse_planned and all(lp["runs_as"] == "dense" for lp in sparse_planned)
    assert "no sparse kernels" in m["warnings"][0] and m["notes"]
    assert b"__global__" in (out / "model.so").read_bytes()  # the GPU kernels travel in the library
    import tvm

    from st_deploy.runner import load
    if not tvm.cuda(0).exist:  # without a GPU, loading says so instead of failing inside TVM
        with pytest.raises(DeployError, match="no such device"):
            load(out)
