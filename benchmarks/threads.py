"""Thread scaling: SuperTickets tickets at 1 and 2 (or more) threads, dense and sparse runtimes side by side.

    python benchmarks/threads.py [--threads 1,2] [--batch 1] [--rounds 3] [--calls 40] [--tickets DIR] [--out DIR]

Tickets: the built-in classification example at 224x224 and a segmentation ticket of the same
supernet (19 classes, HRNet segmentation head) at 256x512, both with 90 % global magnitude masks.
They are exported once (ONNX and TVM llvm artifacts, kept in --tickets). Then every (runtime,
threads) configuration is timed in a process of its own (median of --calls calls after a warm-up),
configurations taking turns, --rounds times: in one process the idle pools of the other runtimes
(ORT's spinning workers, OpenVINO's) take cores from a multi-threaded configuration. Each round
also times ORT dense, so a round in which even ORT dense gains nothing from a second thread is
visible as such (this VM has phases in which two threads run at one thread's speed or worse).

Prints per configuration the median over rounds of the per-process medians, the speedup over one
thread and over the best dense runtime at the same thread count, and a per-layer breakdown of the
sparse runtimes by layer size at each thread count. Writes benchmarks/results/threads-<machine>.json
(threads-<machine>-b<N>.json for --batch N > 1: a TVM artifact is exported for its batch, the ONNX
models take any batch).
Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's st_deploy

RESULTS = Path(__file__).resolve().parent / "results"
DENSE = ("ort-dense", "openvino")
SPARSE = ("ort-sparse", "tvm-sparse")


def make_tickets(folder: Path, batch: int = 1) -> list[dict]:
    """The two tickets and their artifacts for `batch` images a call, made in `folder` unless already there."""
    from st_deploy.api import export
    from st_deploy.example import IMAGENET_KWPARAMS, make_example
    segmentation = {**IMAGENET_KWPARAMS, "task": "segmentation", "num_classes": 19, "head_channels": None,
                    "fcn_head_for_seg": False, "last_channel": 256}
    made = []
    for task, sub, kw, name, shape in (
            ("classification", "cls", None, "supertickets_imagenet_g0.9", [batch, 3, 224, 224]),
            ("segmentation", "seg", segmentation, "supertickets_seg_g0.9", [batch, 3, 256, 512])):
        path = folder / sub / f"{name}.state_dict"
        if not path.is_file():
            path = make_example(folder / sub, seed=0, kwparams=kw, name=name)
        arts = {}
        for target in ("onnx", "llvm"):
            out = folder / sub / (f"artifact-{target}" if target == "onnx" or batch == 1 else f"artifact-{target}-b{batch}")
            if not (out / "manifest.json").is_file():
                export(path, target=target, out=out, input_shape=shape)
            arts[target] = str(out)
        made.append({"task": task, "ticket": str(path), "shape": shape, "artifacts": arts})
    return made


def time_one(runtime: str, threads: int, folder: str, shape: list[int], calls: int, layers: bool) -> dict:
    """One configuration in this (fresh) process: median of `calls` calls, optionally per layer."""
    import numpy as np
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if runtime in ("ort-dense", "ort-sparse"):
        from st_deploy.runtime.ort import ort_session
        model = Path(folder) / ("model.dense.onnx" if runtime == "ort-dense" else "model.sparse.onnx")
        session = ort_session(model, threads=threads)
        name = session.get_inputs()[0].name
        run = lambda: session.run(None, {name: x})  # noqa: E731
    elif runtime == "openvino":
        from st_deploy.bench.openvino_rt import OpenVinoRun
        ov = OpenVinoRun(Path(folder) / "model.dense.onnx", threads, "f32", shape)
        run = lambda: ov(x)  # noqa: E731
    else:
        from st_deploy.runtime.runner import load
        runner = load(folder, threads=threads)
        run = lambda: runner.run(x)  # noqa: E731
    for _ in range(10):
        run()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    out = {"p50_ms": statistics.median(times) * 1e3}
    if layers and runtime in SPARSE:
        from st_deploy.bench.per_layer import ort_per_layer, tvm_per_layer
        prof = (ort_per_layer(Path(folder) / "model.sparse.onnx", x, threads=threads) if runtime == "ort-sparse"
                else tvm_per_layer(Path(folder), x, threads=threads))
        out["nodes"] = [{"node": n["node"], "mean_us": n["mean_us"]} for n in prof["nodes"]]
    return out


def child(runtime: str, threads: int, folder: str, shape: list[int], calls: int, layers: bool) -> dict:
    cmd = [sys.executable, __file__, "--one", json.dumps([runtime, threads, folder, shape, calls, layers])]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.returncode != 0:
        raise SystemExit(f"{runtime} at {threads} threads failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--batch", type=int, default=1, help="images per call")
    ap.add_argument("--runtimes", default="ort-dense,openvino,ort-sparse,tvm-sparse")
    ap.add_argument("--tickets", type=Path, default=Path.home() / ".cache" / "st-deploy" / "threads-benchmark",
                    help="folder for the two tickets and their artifacts, kept between runs")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(time_one(*json.loads(args.one))))
        return
    threads = [int(t) for t in args.threads.split(",")]
    runtimes = args.runtimes.split(",")
    if "openvino" in runtimes:
        try:
            import openvino  # noqa: F401
        except ImportError:
            print('openvino is not installed (pip install "st-deploy[openvino]"): its rows are left out')
            runtimes.remove("openvino")
    from st_deploy.bench.machine import machine_info, machine_slug
    from st_deploy.bench.per_layer import scaling_by_layer_size
    started = time.perf_counter()
    runs = {}
    for t in make_tickets(args.tickets, args.batch):
        print(f"== {t['task']}: {Path(t['ticket']).name} {t['shape']}", flush=True)
        p50 = {(rt, n): [] for rt in runtimes for n in threads}
        layers = {}
        for rnd in range(args.rounds):
            for rt in runtimes:
                for n in threads:
                    folder = t["artifacts"]["llvm" if rt == "tvm-sparse" else "onnx"]
                    got = child(rt, n, folder, t["shape"], args.calls, layers=rnd == 0)
                    p50[(rt, n)].append(got["p50_ms"])
                    if "nodes" in got:
                        layers[(rt, n)] = got
            print(f"   round {rnd + 1}: " + ", ".join(f"{rt}@{n} {p50[(rt, n)][-1]:.2f}" for rt in runtimes
                                                     for n in threads), flush=True)
        med = {k: statistics.median(v) for k, v in p50.items()}
        rows = []
        for (rt, n), ms in med.items():
            dense = {d: med[(d, n)] for d in DENSE if (d, n) in med}
            best = min(dense, key=dense.get) if dense else None
            rows.append({"runtime": rt, "threads": n, "p50_ms": round(ms, 3),
                         "images_per_s": round(args.batch * 1e3 / ms, 1),
                         "per_round_ms": [round(v, 3) for v in p50[(rt, n)]],
                         "vs_1_thread": round(med[(rt, threads[0])] / ms, 2),
                         "best_dense": best, "vs_best_dense": round(dense[best] / ms, 2) if best else None})
        print(f"{'runtime':12s} {'thr':>3s} {'p50 ms':>8s} {'vs 1 thr':>8s} {'vs best dense':>14s}   per round")
        for r in rows:
            vs_dense = f"{r['vs_best_dense']:7.2f}x ({r['best_dense']})" if r["best_dense"] else f"{'-':>8s} (no dense timed)"
            print(f"{r['runtime']:12s} {r['threads']:3d} {r['p50_ms']:8.2f} {r['vs_1_thread']:7.2f}x "
                  f"{vs_dense}   {r['per_round_ms']}")
        scaling = {}
        for rt in SPARSE:
            if (rt, threads[0]) not in layers:
                continue
            for n in threads[1:]:
                rows_b = scaling_by_layer_size(layers[(rt, threads[0])], layers[(rt, n)])
                scaling.setdefault(rt, {})[str(n)] = rows_b
                print(f"-- {rt} per layer (profiled, round 1), {threads[0]} -> {n} threads, by layer time at {threads[0]}")
                for b in rows_b:
                    if b["layers"]:
                        print(f"   {b['layer_us']:>10s} us  {b['layers']:4d} layers  {b['first_us']:8.0f} -> "
                              f"{b['then_us']:8.0f} us  ({b['scaling']}x)")
        runs[t["task"]] = {"ticket": Path(t["ticket"]).name, "input_shape": t["shape"], "summary": rows,
                           "per_layer_scaling": scaling}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"threads-{machine_slug()}{'' if args.batch == 1 else f'-b{args.batch}'}.json"
    path.write_text(json.dumps({"machine": machine_info(), "threads": threads, "batch": args.batch,
                                "runtimes": runtimes,
                                "method": "each configuration in its own process, median of per-process "
                                          f"medians of {args.calls} calls over {args.rounds} rounds",
                                "runs": runs, "seconds": round(time.perf_counter() - started, 1)},
                               indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
