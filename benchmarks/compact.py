"""Params, GFLOP and torch latency of a ticket before and after exact compaction.

    python benchmarks/compact.py [TICKET] [--threshold T] [--shape 1,3,224,224] [--iters N]

Without TICKET, the built-in example (st_deploy.example.make_example, seed 0) is written to
a temporary folder and used. Latency is torch eager on this machine's CPU, median of N runs
after one warm-up, at the ticket's default input shape unless --shape is given; the
compacted module is our GraphModule (dense torch convs: the sparse kernels come later).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from st_deploy.compact import compact
from st_deploy.loaders import load_ticket


def _latency_ms(module: torch.nn.Module, x: torch.Tensor, iters: int) -> float:
    with torch.no_grad():
        module(x)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            module(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ticket", nargs="?", help="ticket path (default: the built-in example)")
    ap.add_argument("--threshold", type=float, default=0.0)
    ap.add_argument("--shape", help="input shape N,C,H,W for latency (default: the ticket's)")
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.ticket
        if path is None:
            from st_deploy.example import make_example
            path = make_example(Path(tmp) / "example", seed=0)
        ticket = load_ticket(path)
        t0 = time.perf_counter()
        c = compact(ticket, threshold=args.threshold)
        seconds = time.perf_counter() - t0
    r = c.report
    shape = tuple(int(v) for v in args.shape.split(",")) if args.shape else tuple(ticket.default_input_shape)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    lat_before = _latency_ms(ticket.module.eval(), x, args.iters)
    lat_after = _latency_ms(c.ticket.module, x, args.iters)
    print(f"ticket        {ticket.name or path}  ({ticket.family}, {ticket.task}), compacted in {seconds:.1f} s")
    print(f"report shape  {tuple(r['input_shape'])}; latency shape {shape}, torch threads {torch.get_num_threads()}")
    print(f"{'':14}{'before':>14}{'after':>14}{'ratio':>8}")
    for label, key, kind, scale in (("params dense", "params", "dense", 1e6), ("params nonzero", "params", "nonzero", 1e6),
                                    ("GFLOP dense", "flops", "dense", 1e9), ("GFLOP nonzero", "flops", "nonzero", 1e9)):
        a, b = r[key]["before"][kind], r[key]["after"][kind]
        unit = "M" if key == "params" else ""
        print(f"{label:14}{a / scale:>13.3f}{unit or ' '}{b / scale:>13.3f}{unit or ' '}{a / max(b, 1):>7.2f}x")
    print(f"{'latency ms':14}{lat_before:>14.2f}{lat_after:>14.2f}{lat_before / lat_after:>7.2f}x")
    if "removed" in r:
        print(f"removed       {r['removed']['blocks']} blocks, {r['removed']['branches']} branches, "
              f"{r['removed']['hidden_channels']} hidden channels")
    print(f"error         max abs {r['error']['max_abs']:.3g}, max rel {r['error']['max_rel']:.3g} "
          f"(seeded input {tuple(r['error']['input_shape'])})")


if __name__ == "__main__":
    main()
