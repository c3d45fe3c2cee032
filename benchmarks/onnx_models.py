"""ORT dense vs ORT sparse latency of an exported ticket (1 and 2 threads, batch 1).

    python benchmarks/onnx_models.py [TICKET] [--rounds 30] [--threads 1 2] [--format auto]
                                      [--sparse-opt extended] [--json out.json]

TICKET defaults to the built-in example (st_deploy.example.make_example(dir, seed=0): the
paper's ImageNet supernet, 90 % global masks). The dense model runs as ORT runs it best (all
optimisations, NCHWc layouts, spinning pool); the sparse one through st_deploy.ort_session.
Runs are interleaved (dense, sparse, dense, ...) so load from other processes hits both alike;
medians are reported.
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
from st_deploy.export import export  # noqa: E402
from st_deploy.loaders import load_ticket  # noqa: E402
from st_deploy.runtime.ort import ort_session  # noqa: E402


def run_interleaved(sessions: dict[str, object], x: np.ndarray, rounds: int, warmup: int = 3) -> dict[str, np.ndarray]:
    """Seconds of each of `rounds` runs per session, sessions taking turns run by run."""
    feeds = {k: {s.get_inputs()[0].name: x} for k, s in sessions.items()}
    for _ in range(warmup):
        for k, s in sessions.items():
            s.run(None, feeds[k])
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feeds[k])
            times[k].append(time.perf_counter() - t0)
    return {k: np.array(v) for k, v in times.items()}


def time_interleaved(sessions: dict[str, object], x: np.ndarray, rounds: int) -> dict[str, float]:
    """Median milliseconds per run of each session."""
    return {k: float(np.median(v) * 1e3) for k, v in run_interleaved(sessions, x, rounds).items()}


def arrangements(out: Path, t: int) -> dict[str, object]:
    """Sparse-model sessions that differ from st_deploy.runtime.ort's default in one setting each."""
    sp, dn = out / "model.sparse.onnx", out / "model.dense.onnx"
    v = {"dense (ORT all, spinning)": ort_session(dn, threads=t),
         "dense (ORT extended)": ort_session(dn, threads=t, optimization="extended"),
         "sparse (default)": ort_session(sp, threads=t),
         "sparse opt=all (NCHWc passes)": ort_session(sp, threads=t, optimization="all"),
         "sparse opt=basic": ort_session(sp, threads=t, optimization="basic")}
    if t > 1:
        v["sparse ORT ParallelFor, no spinning"] = ort_session(sp, threads=t, allow_spinning=False)
        v["sparse st_kernels pool, no spinning"] = ort_session(sp, threads=t, parallel="kernels")
        v["sparse st_kernels pool, spinning"] = ort_session(sp, threads=t, parallel="kernels", allow_spinning=True)
        v[f"sparse ORT 1 thread, st_kernels {t}"] = ort_session(sp, threads=1, parallel="kernels", kernel_threads=t)
    return v


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ticket", nargs="?", help="ticket file (default: the built-in example)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--format", default="auto", choices=["auto", "sparse", "dense"])
    ap.add_argument("--sparse-opt", default=None, choices=["disable", "basic", "extended", "all"],
                    help="ORT optimisation level of the sparse session (default: st_deploy.runtime.ort's)")
    ap.add_argument("--arrangements", action="store_true",
                    help="also time the sparse model under other ORT arrangements (optimisation level, "
                         "spinning, ORT vs kernel thread split) to show why st_deploy.runtime.ort's defaults are what they are")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="st-bench-") as d:
        tmp = Path(d)
        if args.ticket is None:
            from st_deploy.example import make_example
            ticket_path = make_example(tmp / "example", seed=0)
        else:
            ticket_path = Path(args.ticket)
        ticket = load_ticket(ticket_path)
        out = export(ticket, out=tmp / "onnx", format=args.format)
        manifest = read_manifest(out)
        shape = [1, *manifest["inputs"][0]["shape"][1:]]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        layers = manifest["plan"]["layers"]
        n_sparse = sum(lp["format"] != "dense" for lp in layers)
        print(f"{ticket.name or ticket_path}: input {shape}, {n_sparse}/{len(layers)} conv/linear layers sparse "
              f"(plan predicts {manifest['plan']['predicted_total_us'] / 1e3:.2f} ms of conv time)")
        results = {"ticket": str(ticket.name or ticket_path), "input": shape, "rounds": args.rounds, "threads": {}}
        for t in args.threads:
            sessions = {"dense": ort_session(out / "model.dense.onnx", threads=t),
                        "sparse": ort_session(out / "model.sparse.onnx", threads=t, optimization=args.sparse_opt)}
            runs = run_interleaved(sessions, x, args.rounds)
            ms = {k: float(np.median(v) * 1e3) for k, v in runs.items()}
            # Minima too: on a shared machine they show the uncontended speed the medians hide.
            best = {k: float(np.min(v) * 1e3) for k, v in runs.items()}
            speedup = ms["dense"] / ms["sparse"]
            results["threads"][t] = {**{k: round(v, 3) for k, v in ms.items()}, "speedup": round(speedup, 3),
                                     "min": {k: round(v, 3) for k, v in best.items()}}
            print(f"threads {t}: ORT dense {ms['dense']:.3f} ms, ORT sparse {ms['sparse']:.3f} ms, "
                  f"speedup {speedup:.2f}x (medians; minima {best['dense']:.3f} / {best['sparse']:.3f} ms, "
                  f"{best['dense'] / best['sparse']:.2f}x)")
            if args.arrangements:
                arr = run_interleaved(arrangements(out, t), x, args.rounds)
                results["threads"][t]["arrangements"] = {
                    k: {"median": round(float(np.median(v)) * 1e3, 3), "min": round(float(np.min(v)) * 1e3, 3)}
                    for k, v in arr.items()}
                for k, v in results["threads"][t]["arrangements"].items():
                    print(f"  {k:36s} median {v['median']:8.3f} ms  min {v['min']:8.3f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
