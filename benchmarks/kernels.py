"""Sparse kernel speed against ONNX Runtime's dense Conv (and torch), one layer at a time.

    python benchmarks/kernels.py --quick                 # 1x1 256->256 28^2 and 3x3 64->64 56^2, 90 %
    python benchmarks/kernels.py --json out.json         # the full grid (minutes)
    python benchmarks/kernels.py --ops 1x1 --threads 1 --sparsity 0.9,0.95
    python benchmarks/kernels.py --ops dw3x3,dw7x7s2 --threads 1 --shapes 128x56,512x14  # s2 = stride 2

Every layer has a fused bias + ReLU epilogue (ORT: Conv followed by Relu in a 1-node-plus-relu ONNX
model at ORT_ENABLE_ALL, which fuses them). Activations are 64-byte aligned. Each layer is timed in
two cache states, both interleaved so that load from other processes hits all three alike:
  cold (ours_us, ort_dense_us, torch_us, speedup_vs_ort): one call of each in turn, so each call
      finds the caches as the other two left them; on this VM that puts a large layer's input and
      output in DRAM (a 64 MB flush between calls measures the same), which costs a sparse kernel,
      which does a tenth of the FMAs, far more than ORT's compute-bound dense conv;
  warm (*_warm_us, speedup_vs_ort_warm): blocks of calls of each in turn, the first call of every
      block dropped, so each runs with its own data where its previous call left it, as a layer
      called in a loop does.
A layer inside a network sits in between: its input was just written by the layer before it.
GFLOP/s: ours_gflops counts only the multiply-adds of kept weights, dense_gflops the dense layer's
flops in our time (the "effective" rate). The library comes from $ST_KERNELS_LIB or the installed
package.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import st_deploy.kernels as K  # noqa: E402

CHANNELS_HW = [(64, 56), (128, 56), (128, 28), (256, 28), (256, 14), (512, 14), (512, 7)]
DW_CHANNELS_HW = [(128, 56), (256, 28), (512, 14), (512, 7)]
WARM_BLOCK = 8  # calls per block in the warm state (the first one of each is not counted)


def ort_conv(w: np.ndarray, b: np.ndarray, stride: int, pad: int, groups: int,
             threads: int) -> ort.InferenceSession:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[stride, stride],
                              pads=[pad] * 4, group=groups),
             helper.make_node("Relu", ["c"], ["y"])]
    g = helper.make_graph(nodes, "layer", [x], [y],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def interleaved(fns: list[Callable[[], object]], budget_s: float, min_reps: int = 7,
                block: int = 1) -> list[float]:
    """Median seconds of each function, running them in turn until the budget is spent: one call
    of each in turn (block 1), or `block` calls of each in turn, not counting the first call of a
    block (it finds the caches as the other functions left them)."""
    for f in fns:
        f()
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    while len(times[0]) < min_reps or time.perf_counter() - start < budget_s:
        for i, f in enumerate(fns):
            for rep in range(block):
                t = time.perf_counter()
                f()
                if block == 1 or rep > 0:
                    times[i].append(time.perf_counter() - t)
        if len(times[0]) >= 400:
            break
    return [statistics.median(t) for t in times]


def make_weight(rng: np.random.Generator, shape: tuple[int, ...], sparsity: float,
                fmt: str) -> np.ndarray:
    w = rng.standard_normal(shape).astype(np.float32)
    if fmt == "dense" or sparsity <= 0:
        return w
    if fmt == "bsr4x1":  # 4 consecutive output channels share their pattern
        keep = rng.random(((shape[0] + 3) // 4,) + shape[1:]) >= sparsity
        return w * np.repeat(keep, 4, axis=0)[: shape[0]]
    return w * (rng.random(shape) >= sparsity)


def bench_layer(op: str, cin: int, cout: int, hw: int, sparsity: float, fmt: str, threads: int,
                budget_s: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    depthwise = op.startswith("dw")
    m = re.fullmatch(r"(?:dw)?(\d+)x\d+(?:s(\d))?", op)
    if not m:
        raise ValueError(f"unknown op {op!r}: use 1x1, 3x3, dw3x3, dw5x5s2, ...")
    k, stride = int(m.group(1)), int(m.group(2) or 1)
    pad = (k - 1) // 2
    groups = cin if depthwise else 1
    shape = (cout, 1, k, k) if depthwise else (cout, cin, k, k)
    w = make_weight(rng, shape, sparsity, fmt)
    b = rng.standard_normal(cout).astype(np.float32)
    x = K.aligned_empty((1, cin, hw, hw))
    x[...] = rng.standard_normal(x.shape)
    layer = K.SparseConv2d.from_dense(w, b, stride=stride, padding=pad, groups=groups, act="relu",
                                      fmt=fmt)
    out = K.aligned_empty(layer.output_shape(x.shape))
    # ORT and torch run the dense layer (the pruned weight with its zeros).
    sess = ort_conv(w, b, stride, pad, groups, threads)
    xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)

    K.set_num_threads(threads)
    torch.set_num_threads(threads)
    got = layer(x, out=out)
    want = sess.run(None, {"x": x})[0]
    err = float(np.abs(got - want).max() / max(1.0, np.abs(want).max()))
    if err > 1e-3:
        raise RuntimeError(f"{op} {cin}->{cout} {hw}^2 {fmt}: result differs from ORT by {err:.2e}")

    def run_torch() -> None:
        with torch.no_grad():
            F.relu(F.conv2d(xt, wt, bt, stride, pad, 1, groups))

    fns = [lambda: layer(x, out=out), lambda: sess.run(None, {"x": x}), run_torch]
    ours, ort_t, torch_t = interleaved(fns, budget_s)
    ours_w, ort_w, torch_w = interleaved(fns, budget_s, min_reps=3 * WARM_BLOCK, block=WARM_BLOCK)
    oh = (hw + 2 * pad - k) // stride + 1
    dense_flops = 2.0 * cout * (1 if depthwise else cin) * k * k * oh * oh
    useful_flops = 2.0 * layer.nnz * oh * oh
    return {"op": op, "cin": cin, "cout": cout, "h": hw, "w": hw, "sparsity": round(sparsity, 4),
            "density_actual": round(layer.density, 4), "format": fmt, "threads": threads,
            "isa": K.isa(), "ours_us": round(ours * 1e6, 2), "ort_dense_us": round(ort_t * 1e6, 2),
            "torch_us": round(torch_t * 1e6, 2), "speedup_vs_ort": round(ort_t / ours, 3),
            "speedup_vs_torch": round(torch_t / ours, 3),
            "ours_warm_us": round(ours_w * 1e6, 2), "ort_dense_warm_us": round(ort_w * 1e6, 2),
            "torch_warm_us": round(torch_w * 1e6, 2), "speedup_vs_ort_warm": round(ort_w / ours_w, 3),
            "speedup_vs_torch_warm": round(torch_w / ours_w, 3),
            "ours_gflops": round(useful_flops / ours / 1e9, 1),
            "dense_gflops": round(dense_flops / ours / 1e9, 1),
            "ort_gflops": round(dense_flops / ort_t / 1e9, 1)}


def grid(args: argparse.Namespace) -> list[tuple]:
    if args.quick:
        return [("1x1", 256, 256, 28, 0.9, "csr", 1), ("3x3", 64, 64, 56, 0.9, "csr", 1)]
    sparsities = [float(s) for s in args.sparsity.split(",")] if args.sparsity else None
    threads = [int(t) for t in args.threads.split(",")]
    ops = args.ops.split(",")
    shapes = [tuple(int(v) for v in cs.split("x")) for cs in args.shapes.split(",")] if args.shapes else None
    cases = []
    for t in threads:
        for op in ops:
            if op.startswith("dw"):
                for c, hw in (shapes or DW_CHANNELS_HW):
                    for s in sparsities or [0.35, 0.5, 0.75]:
                        for fmt in ("dense", "csr"):
                            if fmt == "dense" and s != (sparsities or [0.35])[0]:
                                continue  # the dense kernel ignores sparsity: time it once
                            cases.append((op, c, c, hw, s if fmt == "csr" else 0.0, fmt, t))
            else:
                for c, hw in (shapes or CHANNELS_HW):
                    if op == "3x3" and c > 256:
                        continue
                    for s in sparsities or [0.5, 0.7, 0.9, 0.95, 0.98]:
                        for fmt in ("csr", "bsr4x1"):
                            cases.append((op, c, c, hw, s, fmt, t))
    return cases


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="two layers, 90 %% sparse, 1 thread")
    p.add_argument("--json", type=Path, help="write the records to this file")
    p.add_argument("--ops", default="1x1,3x3,dw3x3,dw5x5,dw7x7")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--shapes", default="", help="comma list of CHANNELSxHW (input size), e.g. 128x56,512x7")
    p.add_argument("--sparsity", default="", help="comma list, e.g. 0.9,0.95 (default per op)")
    p.add_argument("--budget", type=float, default=0.0,
                   help="seconds per layer and cache state (default 1.5 quick, 0.4 full)")
    args = p.parse_args(argv)
    budget = args.budget or (1.5 if args.quick else 0.4)
    records = []
    head = f"{'op':6} {'cin':>4} {'cout':>4} {'hw':>4} {'spars':>6} {'fmt':>7} {'thr':>3} {'ours_us':>9} " \
           f"{'ort_us':>9} {'torch_us':>9} {'x_ort':>6} {'GF/s':>6} {'warm_us':>9} {'ort_w_us':>9} {'x_ort_w':>7}"
    print(f"st_kernels isa={K.isa()} library={K.library_path()}")
    print(head)
    for case in grid(args):
        r = bench_layer(*case, budget_s=budget)
        records.append(r)
        print(f"{r['op']:6} {r['cin']:>4} {r['cout']:>4} {r['h']:>4} {r['sparsity']:>6.3f} {r['format']:>7} "
              f"{r['threads']:>3} {r['ours_us']:>9.1f} {r['ort_dense_us']:>9.1f} {r['torch_us']:>9.1f} "
              f"{r['speedup_vs_ort']:>6.2f} {r['ours_gflops']:>6.1f} {r['ours_warm_us']:>9.1f} "
              f"{r['ort_dense_warm_us']:>9.1f} {r['speedup_vs_ort_warm']:>7.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
        print(f"wrote {len(records)} records to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
