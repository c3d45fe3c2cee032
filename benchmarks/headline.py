"""Headline: the built-in example ticket (and any ticket given) through every runtime, 1 and 2 threads.

    python benchmarks/headline.py [TICKET ...] [--runtimes all] [--repeat 50]

Writes benchmarks/results/<machine>.json and <machine>.png and prints the table. Speedups are
ratios against ORT dense measured in the same interleaved run on the same machine.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from st_deploy.bench import RUNTIMES, BenchSource, bench, print_results, write_json, write_plot
from st_deploy.bench.machine import machine_slug
from st_deploy.example import make_example
from st_deploy.loaders import load_ticket

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tickets", nargs="*", type=Path, help="tickets to add to the built-in example")
    ap.add_argument("--runtimes", default="all", help="comma-separated runtimes or 'all'")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    runtimes = list(RUNTIMES) if args.runtimes == "all" else args.runtimes.split(",")
    threads = [int(t) for t in args.threads.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        tickets = [make_example(Path(tmp) / "example", seed=0)] + list(args.tickets)
        runs = {}
        for path in tickets:
            ticket = load_ticket(path)
            print(f"== {ticket.name} ({ticket.default_input_shape})")
            result = bench(BenchSource(ticket=ticket), runtimes, threads, [1], warmup=args.warmup,
                           repeat=args.repeat, baseline="ort-dense")
            print_results(result)
            runs[ticket.name] = result
    args.out.mkdir(parents=True, exist_ok=True)
    slug = machine_slug()
    first = next(iter(runs.values()))
    write_json({"machine": first["machine"], "runs": runs}, args.out / f"{slug}.json")
    write_plot(first, args.out / f"{slug}.png")
    print(f"wrote {args.out / (slug + '.json')} and {args.out / (slug + '.png')}")


if __name__ == "__main__":
    main()
