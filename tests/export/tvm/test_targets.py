"""Targets: friendly names and TVM dicts, aarch64 cross-compilation, the cuda build."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.artifacts import check_against, manifest
from st_deploy.errors import DeployError
from st_deploy.export.tvm import export_tvm, resolve_target
from st_deploy.export.tvm.build import dynamic_symbols, elf_info
from st_deploy.export.tvm.targets import AARCH64_CXX, find_nvcc

SHAPE = (1, 3, 32, 32)
# Skips without the cross compiler, except in CI ($CI set, as .ci/run does, which installs it): there
# the export runs and fails, naming the missing tool.
needs_cross = pytest.mark.skipif(shutil.which(AARCH64_CXX) is None and not os.environ.get("CI"),
                                 reason=f"{AARCH64_CXX} absent (apt-get install g++-aarch64-linux-gnu)")


def test_llvm_is_this_cpu_not_generic():
    import tvm
    spec = resolve_target("llvm")
    assert spec.tvm["mcpu"] == tvm.target.codegen.llvm_get_system_cpu() and spec.host_runnable


def test_friendly_names_and_dicts():
    # Both branches assert: without the tool, the name must be refused with the tool's name.
    if shutil.which(AARCH64_CXX):
        spec = resolve_target("rasp4")
        assert spec.tvm["mcpu"] == "cortex-a72" and spec.arch == "aarch64" and not spec.host_runnable
    else:
        with pytest.raises(DeployError, match=AARCH64_CXX):
            resolve_target("rasp4")
    if find_nvcc():
        assert resolve_target("cuda").tvm["arch"] == "sm_80"
        assert resolve_target("cuda --arch sm_90").tvm["arch"] == "sm_90"
    else:
        with pytest.raises(DeployError, match="nvcc"):
            resolve_target("cuda")
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
    assert m["target"]["arch"] == "aarch64" and m["target"]["options"]["tvm"]["mtriple"] == "aarch64-linux-gnu"
    assert "not run" in m["fidelity"]["measured_on"] and m["fidelity"]["files"]["model.so"]["rel"] <= 1e-5


needs_nvcc = pytest.mark.skipif(find_nvcc() is None,
                                reason="nvcc absent: the cuda build is checked where a CUDA toolkit exists")


@pytest.fixture(scope="module")
def cuda_artifact(every_op, tmp_path_factory):
    return export_tvm(every_op, "cuda --arch sm_86", tmp_path_factory.mktemp("cuda") / "cuda", input_shape=SHAPE)


@needs_nvcc
def test_cuda_build_links_our_cuda_kernels_for_every_layer(cuda_artifact):
    m = manifest(cuda_artifact)
    assert m["target"]["device"] == "cuda" and m["target"]["options"]["tvm"]["arch"] == "sm_86"
    so = cuda_artifact / "model.so"
    assert elf_info(so)["type"] == "shared"
    layers = m["plan"]["layers"]
    assert any(lp["format"] != "dense" for lp in layers)
    # every conv/linear runs in our CUDA kernels, in the format the plan chose (no silent dense)
    assert all(lp["impl"].startswith("cuda_") and lp["runs_as"] == lp["format"] for lp in layers), layers
    assert not m["warnings"] and m["notes"]
    syms = dynamic_symbols(so)
    assert {"__tvm_ffi__library_bin", "__tvm_ffi_cuda_conv2d_csr", "__tvm_ffi_cuda_conv2d_bsr",
            "__tvm_ffi_cuda_dwconv2d", "__tvm_ffi_cuda_dwconv2d_csr", "__tvm_ffi_cuda_linear_csr",
            "__tvm_ffi_cuda_linear_dense"} <= syms
    # no global registrations compiled in: loading two artifacts in one process must not abort
    assert not any(s.startswith("st_deploy.") for s in syms)
    data = so.read_bytes()
    assert b"__global__" in data  # TVM's kernels for the other ops travel as CUDA source
    assert b"sm_86" in data or b".target sm_86" in data  # our kernels were compiled for the target arch
    assert "not run" in m["fidelity"]["measured_on"] and m["fidelity"]["files"]["model.so"]["rel"] <= 1e-5


@needs_nvcc
def test_cuda_artifact_without_a_gpu_says_so(cuda_artifact):
    import tvm

    from st_deploy.runtime.runner import load
    if tvm.cuda(0).exist:
        pytest.skip("this machine has a GPU: test_cuda_artifact_runs_on_the_gpu covers it")
    with pytest.raises(DeployError, match="cannot run cuda artifacts|no such device"):
        load(cuda_artifact)


@needs_nvcc
def test_cuda_artifact_runs_on_the_gpu(every_op, cuda_artifact):
    import tvm

    from st_deploy.graph.module import GraphModule
    if not tvm.cuda(0).exist:
        pytest.skip("no CUDA device on this machine (benchmarks/gpu_check.sh runs this on a GPU)")
    assert check_against(cuda_artifact, GraphModule(every_op), SHAPE) <= 1e-5


def test_cuda_auto_rule_uses_the_gpu_thresholds_per_layer_kind(every_op):
    from st_deploy.export.tvm import CUDA_SPARSE_AT, default_formats
    from st_deploy.plan import layer_kind
    from st_deploy.graph.sparse import sparsity
    formats = default_formats(every_op, CUDA_SPARSE_AT)
    kinds = set()
    for n in every_op.nodes:
        if n.op in ("conv2d", "linear"):
            kinds.add(layer_kind(n))
            at = CUDA_SPARSE_AT.get(layer_kind(n))
            sp = sparsity(n.params["weight"], n.params.get("mask"))
            want = "csr" if at is not None and "mask" in n.params and sp >= at else "dense"
            assert formats[n.name] == want, (n.name, layer_kind(n), sp)
    assert CUDA_SPARSE_AT["dw"] > CUDA_SPARSE_AT["conv1x1"] and "dw" in kinds
