"""cpu_schedule: large Relax ops get a parallel outer loop, small ones keep TVM's, results unchanged."""

from __future__ import annotations

import numpy as np
import tvm
import tvm_ffi
from tvm import relax, tirx

from st_deploy.export.tvm.cpu_schedule import MIN_PARALLEL_ELEMENTS, schedule_cpu_ops


def _module() -> tvm.IRModule:
    bb = relax.BlockBuilder()
    big = relax.Var("big", relax.TensorType((2, 16, 40, 40), "float32"))       # 51200 outputs
    small = relax.Var("small", relax.TensorType((1, 4, 7, 7), "float32"))      # 196 outputs
    with bb.function("main", [big, small]):
        with bb.dataflow():
            a = bb.emit(relax.op.nn.relu(relax.op.add(big, big)))
            up = bb.emit(relax.op.image.resize2d(a, (80, 80), layout="NCHW", method="nearest_neighbor"))
            pooled = bb.emit(relax.op.mean(up, axis=[2, 3], keepdims=True))      # reduce over 6400 per output
            s = bb.emit(relax.op.add(small, small))
            out = bb.emit_output(relax.Tuple([up, pooled, s]))
        bb.emit_func_output(out)
    return bb.get()


def _parallel_loops(func: tirx.PrimFunc) -> int:
    found = []
    tvm_ffi.structural_walk(func.body, [(tirx.For, lambda n: found.append(n) if n.kind == tirx.ForKind.PARALLEL
                                         else None)], order="post")
    return len(found)


def test_large_ops_get_parallel_loops_small_ones_do_not():
    target = tvm.target.Target("llvm")
    mod = schedule_cpu_ops(_module(), target)
    prims = {gv.name_hint: f for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)}
    parallel = {name for name, f in prims.items() if _parallel_loops(f)}
    # add, relu and resize of the big tensor write >= MIN_PARALLEL_ELEMENTS outputs: parallel; the
    # mean writes 32 and the small add (add1) 196: TVM's loops
    assert 2 * 16 * 40 * 40 >= MIN_PARALLEL_ELEMENTS > 196
    assert set(prims) == {"add", "add1", "mean", "relu", "resize2d"}
    assert parallel == {"add", "relu", "resize2d"}


def test_scheduled_module_computes_the_same(monkeypatch):
    monkeypatch.setenv("TVM_NUM_THREADS", "3")
    rng = np.random.default_rng(0)
    big = rng.standard_normal((2, 16, 40, 40)).astype(np.float32)
    small = rng.standard_normal((1, 4, 7, 7)).astype(np.float32)
    target = tvm.target.Target("llvm")
    results = []
    for mod in (_module(), schedule_cpu_ops(_module(), target)):
        vm = relax.VirtualMachine(tvm.compile(mod, target=target), tvm.cpu())
        results.append([o.numpy() for o in vm["main"](tvm.runtime.tensor(big), tvm.runtime.tensor(small))])
    for want, got in zip(*results):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(results[1][0], np.repeat(np.repeat(np.maximum(2 * big, 0), 2, axis=2), 2, axis=3))
