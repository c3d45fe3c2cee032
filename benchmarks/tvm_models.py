"""TVM sparse vs TVM dense vs ORT dense latency of one ticket (batch 1, medians).

    python benchmarks/tvm_models.py [TICKET] [--rounds 30] [--threads 1] [--plan default|auto|sparse]
                                    [--json out.json]

TICKET defaults to the built-in example (st_deploy.example.make_example(dir, seed=0): the paper's
ImageNet supernet at 224x224, 90 % global masks), compacted by st_deploy.compact. "TVM sparse"
uses --plan (default: the exporter's rule, csr where sparsity >= 0.5); "TVM dense" keeps every
layer dense (our kernels at full density); "ORT dense" is model.dense.onnx as ORT runs it best.
Runs are interleaved so load from other processes hits all three alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from st_deploy.artifact import read_manifest  # noqa: E402
from st_deploy.compact import compact  # noqa: E402
from st_deploy.export import export  # noqa: E402
from st_deploy.export.tvm import export_tvm  # noqa: E402
from st_deploy.loaders import load_ticket  # noqa: E402
from st_deploy.runtime.runner import load  # noqa: E402


def time_interleaved(runs: dict[str, object], x: np.ndarray, rounds: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        for f in runs.values():
            f(x)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, f in runs.items():
            t0 = time.perf_counter()
            f(x)
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v) * 1e3) for k, v in times.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ticket", nargs="?", help="ticket file (default: the built-in example)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plan", default="default", choices=["default", "auto", "sparse"],
                    help="plan of the sparse artifact (default: export_tvm's plan=None rule)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="st-bench-tvm-") as d:
        tmp = Path(d)
        ticket_path = Path(args.ticket) if args.ticket else None
        if ticket_path is None:
            from st_deploy.example import make_example
            ticket_path = make_example(tmp / "example", seed=0)
        ticket = compact(load_ticket(ticket_path)).ticket
        t0 = time.perf_counter()
        sparse = export_tvm(ticket, "llvm", tmp / "tvm_sparse", plan=None if args.plan == "default" else args.plan)
        t_export = time.perf_counter() - t0
        dense = export_tvm(ticket, "llvm", tmp / "tvm_dense", plan="dense")
        onnx = export(ticket, out=tmp / "onnx", format="dense")
        manifest = read_manifest(sparse)
        shape = manifest["inputs"][0]["shape"]
        layers = manifest["plan"]["layers"]
        n_sparse = sum(lp["runs_as"] != "dense" for lp in layers)
        print(f"{ticket.name or ticket_path}: input {shape}, {n_sparse}/{len(layers)} conv/linear layers sparse; "
              f"TVM export {t_export:.1f} s; fidelity rel {manifest['fidelity']['files']['model.so']['rel']:.2g}")
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        runs = {"tvm_sparse": load(sparse, threads=args.threads).run,
                "tvm_dense": load(dense, threads=args.threads).run,
                "ort_dense": load(onnx, threads=args.threads, dense=True).run}
        ms = time_interleaved(runs, x, args.rounds)
    res = {"ticket": str(ticket.name or ticket_path), "input": shape, "threads": args.threads, "rounds": args.rounds,
           "plan": args.plan, "ms": {k: round(v, 3) for k, v in ms.items()},
           "tvm_sparse_vs_ort_dense": round(ms["ort_dense"] / ms["tvm_sparse"], 3),
           "tvm_dense_vs_ort_dense": round(ms["ort_dense"] / ms["tvm_dense"], 3)}
    print(f"threads {args.threads}: TVM sparse {ms['tvm_sparse']:.3f} ms, TVM dense {ms['tvm_dense']:.3f} ms, "
          f"ORT dense {ms['ort_dense']:.3f} ms; TVM sparse {res['tvm_sparse_vs_ort_dense']:.2f}x and TVM dense "
          f"{res['tvm_dense_vs_ort_dense']:.2f}x the speed of ORT dense")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
