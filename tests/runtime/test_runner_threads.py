"""st_deploy.load(DIR).run and ort_session from many threads at once: identical outputs, no crash."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.artifacts import inputs

THREADS, CALLS, DEADLINE_S = 4, 25, 120.0


def _hammer(call, xs: list[np.ndarray], refs: list[np.ndarray]) -> list[str]:
    """THREADS threads, each CALLS calls cycling through xs; returns every mismatch or error."""
    problems: list[str] = []
    start = threading.Barrier(THREADS)
    deadline = time.monotonic() + DEADLINE_S

    def worker(k: int) -> None:
        start.wait()
        for i in range(CALLS):
            if time.monotonic() > deadline:
                problems.append(f"thread {k}: deadline passed at call {i}")
                return
            j = (k + i) % len(xs)
            try:
                y = call(xs[j])
            except Exception as e:  # noqa: BLE001 - reported, the test fails on it
                problems.append(f"thread {k} call {i}: {type(e).__name__}: {e}")
                continue
            if not np.array_equal(y, refs[j]):
                problems.append(f"thread {k} call {i}: output differs from the single-threaded one")

    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(THREADS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(DEADLINE_S + 10)
    assert not any(t.is_alive() for t in ts), "a worker hung"
    return problems


def test_tvm_runner_from_4_threads(tvm_artifact):
    import st_deploy
    r = st_deploy.load(tvm_artifact, threads=1)
    xs = inputs(3)
    refs = [r.run(x) for x in xs]
    assert r.vms == 1
    assert _hammer(r.run, xs, refs) == []
    assert 1 <= r.vms <= THREADS + 1  # one VM per concurrent caller (the main thread's included)


def test_tvm_runner_max_vms_bounds_the_pool(tvm_artifact):
    import st_deploy
    from st_deploy.errors import DeployError
    r = st_deploy.load(tvm_artifact, threads=1, max_vms=2)
    xs = inputs(2, seed=1)
    refs = [r.run(x) for x in xs]
    assert _hammer(r.run, xs, refs) == []
    assert r.vms <= 2
    with pytest.raises(DeployError, match="max_vms"):
        st_deploy.load(tvm_artifact, threads=1, max_vms=0)


@pytest.mark.parametrize("dense", [False, True])
def test_onnx_runner_from_4_threads(onnx_artifact, dense):
    import st_deploy
    r = st_deploy.load(onnx_artifact, threads=1, dense=dense)
    xs = inputs(3, batch=2, seed=2)
    refs = [r.run(x) for x in xs]
    assert _hammer(r.run, xs, refs) == []


def test_ort_session_from_4_threads(onnx_artifact):
    import st_deploy
    s = st_deploy.ort_session(onnx_artifact / "model.sparse.onnx", threads=2)
    name = s.get_inputs()[0].name
    xs = inputs(3, seed=3)
    refs = [s.run(None, {name: x})[0] for x in xs]
    assert _hammer(lambda x: s.run(None, {name: x})[0], xs, refs) == []


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_tvm_runner_kernels_on_tvms_pool(tvm_artifact, threads):
    """Our kernels' parallel loops run on TVM's pool (one pool, not two competing), at any thread
    count the results match one thread's, and no thread of the process gets pinned to one CPU."""
    import os

    import st_deploy
    allowed = os.sched_getaffinity(0)
    x = inputs(1)[0]
    want = st_deploy.load(tvm_artifact, threads=1).run(x)
    r = st_deploy.load(tvm_artifact, threads=threads)
    assert r.kernel_pool == "tvm"
    for _ in range(3):
        np.testing.assert_allclose(r.run(x), want, rtol=1e-5, atol=1e-6)
    pinned = {t: os.sched_getaffinity(int(t)) for t in os.listdir("/proc/self/task")}
    assert all(a == allowed for a in pinned.values()), pinned
