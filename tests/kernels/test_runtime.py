"""Variant list, ISA selection (no silent fallback), threads, library loading, concurrent calls."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import st_deploy.kernels as K
from st_deploy.errors import DeployError

from .conftest import REPO, assert_close, conv_ref, sparse_weight

ARCH = "x86" if platform.machine() in ("x86_64", "AMD64") else "arm" if platform.machine() in ("aarch64", "arm64") else "other"


def inc_variants() -> list[str]:
    text = (REPO / "kernels" / "kernels.inc").read_text()
    rows = re.findall(r"^ST_VARIANT\((\w+), *(\w+), *(\w+), *(\w+)\)", text, re.M)
    return [f"{op}-{fmt}-{isa}" for op, fmt, isa, arch in rows if arch in ("any", ARCH)]


def test_variants_follow_kernels_inc():
    assert K.variants() == inc_variants()
    ops = {v.rsplit("-", 1)[0] for v in K.variants()}
    for isa in K.available_isas():
        assert {f"{op}-{isa}" for op in ops} <= set(K.variants()), isa


def test_isa_selection_is_explicit():
    assert K.isa() in K.available_isas()
    assert K.available_isas()[0] == K.isa()  # best available by default
    assert "scalar" in K.available_isas()
    missing = [i for i in K.ISAS if not K.isa_available(i)]
    for name in missing:
        with pytest.raises(DeployError, match=name):
            K.set_isa(name)
    with pytest.raises(DeployError, match="not built"):
        K.set_isa("sse9")
    for name in K.available_isas():
        with K.use_isa(name):
            assert K.isa() == name


def _run_py(code: str, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                          cwd=str(REPO))


def test_env_forced_unavailable_isa_fails_every_call():
    bad = "neon" if ARCH == "x86" else "avx512"
    code = ("import numpy as np, st_deploy.kernels as K\n"
            "try:\n    K.linear_csr(np.ones((1,1),np.float32),[0,1],[0],[1.0],out_features=1)\n"
            "except Exception as e: print('ERR', e)\n")
    r = _run_py(code, ST_KERNELS_ISA=bad)
    assert "ERR" in r.stdout and bad in r.stdout and "ST_KERNELS_ISA" in r.stdout, r.stdout + r.stderr


def test_env_forced_scalar_runs_scalar():
    r = _run_py("import st_deploy.kernels as K; print(K.isa())", ST_KERNELS_ISA="scalar")
    assert r.stdout.strip() == "scalar", r.stderr


def test_missing_library_is_a_clear_error():
    r = _run_py("import st_deploy.kernels as K\ntry: K.isa()\nexcept Exception as e: print(type(e).__name__, e)",
                ST_KERNELS_LIB="/nonexistent/libst_kernels.so")
    assert "DeployError" in r.stdout and "pip install" in r.stdout, r.stdout + r.stderr


def test_threads_setting():
    before = K.get_num_threads()
    assert before >= 1
    K.set_num_threads(3)
    assert K.get_num_threads() == 3
    with pytest.raises(K.KernelError):
        K.set_num_threads(0)
    K.set_num_threads(before)


def test_spin_setting_and_a_sleeping_pool():
    """spin 0: workers sleep between jobs (the wake-up path); results must not depend on it."""
    before_spin, before_threads = K.get_spin_us(), K.get_num_threads()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 40, 20, 20)).astype(np.float32)
    w = sparse_weight((48, 40, 3, 3), 0.7, rng)
    layer = K.SparseConv2d.from_dense(w, padding=1, fmt="csr")
    want = conv_ref(x, w, None, 1, 1, 1, "none")
    try:
        for spin in (0, 5, 200):
            K.set_spin_us(spin)
            assert K.get_spin_us() == spin
            for n in (2, 3):
                K.set_num_threads(n)
                for _ in range(20):  # many jobs in a row: workers alternate between polling and sleeping
                    assert_close(layer(x), want)
        with pytest.raises(K.KernelError, match="spin"):
            K.set_spin_us(-1)
    finally:
        K.set_spin_us(before_spin)
        K.set_num_threads(before_threads)


def test_spin_from_environment():
    r = _run_py("import st_deploy.kernels as K; print(K.get_spin_us())", ST_KERNELS_SPIN_US="0")
    assert r.stdout.strip() == "0", r.stderr
    r = _run_py("import st_deploy.kernels as K; print(K.get_spin_us())", ST_KERNELS_SPIN_US="lots")
    assert r.stdout.strip() == "200", r.stderr  # unparsable: the default, as documented


def test_many_small_jobs_three_threads():
    """Back-to-back small layers (the polling path) with an odd thread count."""
    before = K.get_num_threads()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 24, 12, 12)).astype(np.float32)
    w = sparse_weight((40, 24, 1, 1), 0.5, rng)
    layer = K.SparseConv2d.from_dense(w, fmt="csr")
    want = conv_ref(x, w, None, 1, 0, 1, "none")
    try:
        K.set_num_threads(3)
        for _ in range(300):
            assert_close(layer(x), want)
    finally:
        K.set_num_threads(before)


def test_kernels_on_tvms_thread_pool():
    """use_host_pool: parallel loops go through TVM's TVMBackendParallelLaunch (as inside a TVM
    artifact), with fewer or more TVM threads than tasks; results as with our own pool."""
    import tvm  # a dependency: an import error fails here, never skips
    from st_deploy.kernels._lib import call
    before = K.get_num_threads()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 40, 20, 20)).astype(np.float32)
    w = sparse_weight((48, 40, 3, 3), 0.7, rng)
    layer = K.SparseConv2d.from_dense(w, padding=1, fmt="csr")
    want = conv_ref(x, w, None, 1, 1, 1, "none")
    cpus = [str(c) for c in sorted(os.sched_getaffinity(0))]  # shared, never pinned
    try:
        for tvm_threads, ours in ((2, 2), (3, 2), (1, 3)):
            tvm.get_global_func("runtime.config_threadpool")(-3, tvm_threads, cpus)
            K.set_num_threads(ours)
            assert call("use_host_pool", True) is True
            for _ in range(5):
                assert_close(layer(x), want)
    finally:
        call("use_host_pool", False)
        K.set_num_threads(before)
        tvm.get_global_func("runtime.config_threadpool")(-3, before, cpus)
    assert_close(layer(x), want)


def test_concurrent_callers_share_the_pool():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 32, 28, 28)).astype(np.float32)
    w = sparse_weight((32, 32, 3, 3), 0.5, rng)
    layer = K.SparseConv2d.from_dense(w, padding=1, fmt="csr")
    want = conv_ref(x, w, None, 1, 1, 1, "none")
    errors = []

    def worker():
        for _ in range(10):
            try:
                assert_close(layer(x), want)
            except Exception as e:  # collected: a thread's assertion would be lost otherwise
                errors.append(e)

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]
