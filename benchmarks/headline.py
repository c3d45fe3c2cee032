"""Headline: the built-in example ticket (and any ticket given) through every runtime, 1 and 2 threads.

    python benchmarks/headline.py [TICKET ...] [--runtimes all] [--repeat 50] [--quick] [--out DIR]

Writes benchmarks/results/<machine>.json and <machine>.png (or into --out) and prints the table.
"all" is every runtime, ort-plain (ORT on a plain torch.onnx.export) and openvino (f32) included, the
latter when installed (the run says when it is not); add openvino-bf16 by naming it in --runtimes.
Speedups are ratios against the fastest dense f32 runtime at each thread count (bench's best-dense
baseline; each record's baseline_runtime names it), measured in the same interleaved run.
Each configuration's peak memory is measured afterwards in its own process (--no-memory skips).
--quick (10 timed calls, 2 warm-up, a check that everything runs, not figures to publish)
writes into a temporary folder unless --out is given, so it never replaces committed results.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's st_deploy

from st_deploy.bench import BenchSource, bench, print_results, write_json, write_plot  # noqa: E402
from st_deploy.bench.machine import machine_slug  # noqa: E402
from st_deploy.example import make_example  # noqa: E402
from st_deploy.loaders import load_ticket  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tickets", nargs="*", type=Path, help="tickets to add to the built-in example")
    ap.add_argument("--runtimes", default="all", help="comma-separated runtimes or 'all'")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=50, help="timed calls per configuration (interleaved rounds)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.0, help="minimum timed seconds per configuration")
    ap.add_argument("--quick", action="store_true",
                    help="--repeat 10 --warmup 2, written to a temporary folder unless --out is given")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-configuration peak-memory processes")
    ap.add_argument("--out", type=Path, default=None, help=f"results folder (default {RESULTS})")
    args = ap.parse_args()
    if args.quick:
        args.repeat, args.warmup = min(args.repeat, 10), min(args.warmup, 2)
        if args.out is None:
            args.out = Path(tempfile.mkdtemp(prefix="st-headline-"))
    args.out = args.out or RESULTS
    started = time.perf_counter()
    runtimes = "all" if args.runtimes == "all" else args.runtimes.split(",")
    threads = [int(t) for t in args.threads.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        tickets = [make_example(Path(tmp) / "example", seed=0)] + list(args.tickets)
        runs = {}
        for path in tickets:
            ticket = load_ticket(path)
            print(f"== {ticket.name} ({ticket.default_input_shape})")
            result = bench(BenchSource(ticket=ticket), runtimes, threads, [1], warmup=args.warmup,
                           repeat=args.repeat, min_time=args.min_time, baseline="best-dense",
                           memory=not args.no_memory)
            if result["runtimes_chosen"]:
                print(result["runtimes_chosen"])
            print_results(result)
            runs[ticket.name] = result
    args.out.mkdir(parents=True, exist_ok=True)
    slug = machine_slug()
    first = next(iter(runs.values()))
    elapsed = time.perf_counter() - started
    settings = {"repeat": args.repeat, "warmup": args.warmup, "min_time": args.min_time, "threads": threads,
                "runtimes": first["runtimes_chosen"] or runtimes, "quick": args.quick, "memory": not args.no_memory,
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "elapsed_s": round(elapsed, 1)}
    write_json({"machine": first["machine"], "settings": settings, "runs": runs}, args.out / f"{slug}.json")
    write_plot(first, args.out / f"{slug}.png")
    print(f"wrote {args.out / (slug + '.json')} and {args.out / (slug + '.png')} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
