"""GPU check of a TVM cuda artifact: outputs vs the ticket, latency vs cuDNN (torch), on one GPU.

Runs where an NVIDIA GPU is: loads DIR/model.so with st_deploy.load (TVM's runtime alone is
enough), checks its output against the compacted ticket run by torch on the CPU (exact fp32
reference) and times it against the same compacted network in torch on the GPU (cuDNN, fp32 with
TF32 off, and TF32 on as a second column), eagerly and replayed from a CUDA graph (which
removes Python's and the launches' overhead: cuDNN's GPU time). Timings are medians of
interleaved rounds, each round `--number` calls bracketed by a device synchronisation.

    python benchmarks/gpu_tvm.py --artifact DIR --compact compact.pt [--json OUT]

benchmarks/gpu_prepare.py makes DIR and compact.pt from the built-in example ticket.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", action="append", required=True, help="TVM cuda export folder (repeatable)")
    ap.add_argument("--compact", required=True, help="compact.pt of the same ticket (st-deploy compact)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--number", type=int, default=20)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    import st_deploy
    import tvm

    # An llvm artifact runs the same script on the CPU (a smoke test of this script without a GPU).
    gpu = torch.cuda.is_available()
    dev_t = torch.device("cuda" if gpu else "cpu")
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    ticket = st_deploy.load_ticket(args.compact)
    model = ticket.module.eval()
    results: dict = {"gpu": torch.cuda.get_device_name(0) if gpu else "none (CPU smoke run)",
                     "torch": torch.__version__, "tvm": tvm.__version__, "artifacts": {}, "torch_cuda": {}}

    runners = {}
    for a in args.artifact:
        t0 = time.perf_counter()
        r = st_deploy.load(a, threads=1)
        shape = tuple(r.input_shape)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = model(x)
        ref = ref if isinstance(ref, (list, tuple)) else [ref]
        got = r.run(x.numpy())
        first_s = time.perf_counter() - t0
        got = got if isinstance(got, list) else [got]
        rel = max(_rel(g, t.numpy()) for g, t in zip(got, ref))
        from st_deploy.artifact import read_manifest
        m = read_manifest(a)
        kinds = {}
        for lp in m["plan"]["layers"]:
            kinds[lp["impl"].split(" ")[0]] = kinds.get(lp["impl"].split(" ")[0], 0) + 1
        results["artifacts"][a] = {"rel_err_vs_torch_cpu": rel, "load_and_first_run_s": round(first_s, 2),
                                   "layers_by_impl": kinds, "arch": m["target"]["options"]["tvm"].get("arch")}
        print(f"{a}: rel err vs torch (CPU, fp32) {rel:.3g}; load+first run {first_s:.1f} s; {kinds}", flush=True)
        runners[a] = (r, tvm.runtime.tensor(x.numpy(), r.device))

    xg = torch.randn(tuple(next(iter(runners.values()))[0].input_shape), device=dev_t)
    model_g = model.to(dev_t)
    torch.backends.cudnn.benchmark = True

    def torch_round(tf32: bool) -> float:
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        with torch.no_grad():
            sync()
            t0 = time.perf_counter()
            for _ in range(args.number):
                model_g(xg)
            sync()
        return (time.perf_counter() - t0) / args.number * 1e3

    def graph_of(tf32: bool):
        """The network captured in a CUDA graph: cuDNN's kernels without Python's launch overhead."""
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        g = torch.cuda.CUDAGraph()
        with torch.no_grad():
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    model_g(xg)
            torch.cuda.current_stream().wait_stream(s)
            with torch.cuda.graph(g):
                model_g(xg)
        return g

    def graph_round(g) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(args.number):
            g.replay()
        sync()
        return (time.perf_counter() - t0) / args.number * 1e3

    def tvm_round(r, xt) -> float:
        r.device.sync()
        t0 = time.perf_counter()
        for _ in range(args.number):
            r._main(xt)
        r.device.sync()
        return (time.perf_counter() - t0) / args.number * 1e3

    for _ in range(3):  # warm-up: cuDNN algorithm search, TVM kernel compilation
        torch_round(False), torch_round(True)
        for r, xt in runners.values():
            tvm_round(r, xt)
    graphs = {}
    if gpu:
        try:
            graphs = {"torch fp32 CUDA graph": graph_of(False), "torch tf32 CUDA graph": graph_of(True)}
        except Exception as e:  # said, not hidden: the eager figures remain
            print(f"CUDA graph capture failed ({e}); eager torch figures only", flush=True)
            results["cuda_graph_error"] = str(e)
    times: dict[str, list[float]] = {"torch fp32": [], "torch tf32": [], **{k: [] for k in graphs},
                                     **{a: [] for a in runners}}
    for _ in range(args.rounds):
        times["torch fp32"].append(torch_round(False))
        times["torch tf32"].append(torch_round(True))
        for k, g in graphs.items():
            times[k].append(graph_round(g))
        for a, (r, xt) in runners.items():
            times[a].append(tvm_round(r, xt))
    base = statistics.median(times["torch fp32"])
    print(f"\n{'runtime':48s} {'median ms':>10s} {'min ms':>8s} {'vs cuDNN fp32':>14s}")
    for k, v in times.items():
        med = statistics.median(v)
        print(f"{k:48s} {med:10.3f} {min(v):8.3f} {base / med:13.2f}x")
        entry = {"median_ms": med, "min_ms": min(v), "speedup_vs_cudnn_fp32": base / med, "rounds": v}
        if k in results["artifacts"]:
            results["artifacts"][k].update(entry)
        else:
            results["torch_cuda"][k] = entry
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
