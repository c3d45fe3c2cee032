"""Load on `st-deploy serve`: concurrent tritonclient clients on loopback, every answer checked.

    python benchmarks/serve.py [TICKET] [--seconds 30] [--max-requests 20000] [--clients 8]
                               [--configs embedded-1,embedded-2,ray-2] [--runtime ort-sparse] [--quick]

The ticket (default: the built-in example, seed 0, 224x224) is exported for ONNX into a temporary
folder; each configuration serves it on 127.0.0.1 (embedded-N: `st-deploy serve` in its own process
with N instances, dynamic batching at its defaults; ray-N: Ray Serve with N replicas of one
instance each) and
--clients threads, each with its own tritonclient.http client and binary tensors, send requests
for --seconds (and at most --max-requests in all) after a warm-up. Every answer is compared with
the ticket's own torch output for that input (relative error <= 1e-4, the export tolerance);
a wrong, missing or failed answer is counted and makes the script exit 1. Prints p50/p99 latency
and throughput per configuration and writes benchmarks/results/serve-<machine>.json (or --out).
--quick: 5 s per configuration and a temporary output folder, a check that everything runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's st_deploy

RESULTS = Path(__file__).resolve().parent / "results"
N_INPUTS = 16
REL_TOLERANCE = 1e-4


class _Subprocess:
    """`st-deploy serve` in its own process (as deployed: the clients' Python threads do not share
    its interpreter), on a free loopback port; stop() sends SIGTERM and waits."""

    def __init__(self, args: list[str]) -> None:
        import re
        import subprocess
        self.p = subprocess.Popen([sys.executable, "-m", "st_deploy", "serve", *args, "--port", "0"],
                                  stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        m = re.search(r"at http://127\.0\.0\.1:(\d+)/", line)
        if m is None:
            self.stop()
            raise SystemExit(f"st-deploy serve did not start: {line!r}")
        self.port = int(m.group(1))

    def stop(self) -> None:
        import signal
        import subprocess
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)


def _start(config: str, artifact: Path, runtime: str, threads: int):
    kind, _, n = config.partition("-")
    if kind == "embedded":
        return _Subprocess([str(artifact), "--name", "m", "--runtime", runtime, "--threads", str(threads),
                            "--instances", n])
    if kind == "ray":
        from st_deploy.serve.ray_app import RayServer
        return RayServer(artifact, name="m", port=0, runtime=runtime, threads=threads, replicas=int(n))
    raise SystemExit(f"unknown configuration {config!r}: embedded-N or ray-N")


def _load(server_port: int, xs: list[np.ndarray], refs: list[np.ndarray], clients: int, seconds: float,
          max_requests: int) -> dict:
    import tritonclient.http as th
    latencies: list[float] = []
    wrong, failed = [0], [0]
    sent = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(k: int, deadline_box: list[float]) -> None:
        c = th.InferenceServerClient(f"127.0.0.1:{server_port}", connection_timeout=60, network_timeout=120)
        start.wait()
        i = k
        while time.perf_counter() < deadline_box[0]:
            with lock:
                if sent[0] >= max_requests:
                    break
                sent[0] += 1
            j = i % len(xs)
            i += clients
            inp = th.InferInput("input", list(xs[j].shape), "FP32")
            inp.set_data_from_numpy(xs[j])
            t0 = time.perf_counter()
            try:
                r = c.infer("m", [inp])
                y = r.as_numpy(r.get_response()["outputs"][0]["name"])
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    failed[0] += 1
                print(f"  client {k}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
                continue
            dt = time.perf_counter() - t0
            ok = y is not None and y.shape == refs[j].shape and \
                float(np.abs(y - refs[j]).max() / np.abs(refs[j]).max()) <= REL_TOLERANCE
            with lock:
                latencies.append(dt)
                wrong[0] += not ok
        c.close()

    deadline = [float("inf")]
    ts = [threading.Thread(target=client, args=(k, deadline), daemon=True) for k in range(clients)]
    t_start = time.perf_counter()
    deadline[0] = t_start + seconds
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 180)
    elapsed = time.perf_counter() - t_start
    hung = sum(t.is_alive() for t in ts)
    lat = np.array(latencies) * 1e3
    return {"requests": sent[0], "answered": len(latencies), "wrong": wrong[0], "failed": failed[0],
            "hung_clients": hung, "seconds": round(elapsed, 2),
            "throughput_rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
            "mean_ms": round(float(lat.mean()), 2) if len(lat) else None}


def _mean_batch(port: int) -> float | None:
    """Mean size of the batches the instances ran (warm-up included), from the server's /metrics."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    vals = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("st_serve_batch_size_s")
                or line.startswith("st_serve_batch_size_c"))
    count = float(vals.get('st_serve_batch_size_count{model="m"}', 0))
    return round(float(vals['st_serve_batch_size_sum{model="m"}']) / count, 2) if count else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ticket", nargs="?", type=Path, default=None, help="default: the built-in example")
    ap.add_argument("--seconds", type=float, default=30.0, help="timed load per configuration")
    ap.add_argument("--max-requests", type=int, default=20000, help="cap on requests per configuration")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--configs", default="embedded-1,embedded-2,ray-2")
    ap.add_argument("--runtime", default="ort-sparse", choices=["ort-sparse", "ort-dense"])
    ap.add_argument("--threads", type=int, default=1, help="runtime threads per instance")
    ap.add_argument("--quick", action="store_true", help="5 s per configuration, temporary output folder")
    ap.add_argument("--out", type=Path, default=None, help=f"results folder (default {RESULTS})")
    args = ap.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 5.0)
        args.out = args.out or Path(tempfile.mkdtemp(prefix="st-serve-bench-"))
    args.out = args.out or RESULTS
    if not 1 <= args.clients <= 64 or not 0 < args.seconds <= 600 or args.max_requests < 1:
        raise SystemExit("--clients 1..64, --seconds 0..600, --max-requests >= 1")

    import torch

    from st_deploy.api import export
    from st_deploy.bench.machine import machine_info, machine_slug
    from st_deploy.example import make_example
    from st_deploy.loaders import load_ticket

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = args.ticket or make_example(Path(tmp) / "example", seed=0)
        ticket = load_ticket(path)
        shape = tuple(ticket.default_input_shape)
        print(f"== {ticket.name} {shape}: exporting for onnx")
        artifact = export(ticket, target="onnx", out=Path(tmp) / "artifact")
        g = torch.Generator().manual_seed(0)
        xs = [torch.randn(shape, generator=g) for _ in range(N_INPUTS)]
        with torch.no_grad():
            refs = [ticket.module(x) for x in xs]
        refs = [(r[0] if isinstance(r, (list, tuple)) else r).numpy() for r in refs]
        xs = [x.numpy() for x in xs]
        for config in args.configs.split(","):
            print(f"-- {config}: starting")
            server = _start(config, artifact, args.runtime, args.threads)
            try:
                _load(server.port, xs, refs, args.clients, 2.0, 4 * args.clients)  # warm-up
                r = _load(server.port, xs, refs, args.clients, args.seconds, args.max_requests)
                if config.startswith("embedded"):  # Ray's /metrics is one replica's
                    r["mean_batch"] = _mean_batch(server.port)
            finally:
                server.stop()
            results[config] = r
            print(f"   {r['answered']}/{r['requests']} answered, {r['wrong']} wrong, {r['failed']} failed; "
                  f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['throughput_rps']} req/s")
    doc = {"load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],  # other work on the machine
           "ticket": ticket.name, "input_shape": list(shape), "runtime": args.runtime, "threads": args.threads,
           "clients": args.clients, "seconds": args.seconds, "max_requests": args.max_requests,
           "machine": machine_info(), "configs": results}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"serve-{machine_slug()}.json"
    out.write_text(json.dumps(doc, indent=1))
    print(f"{'config':<12} {'answered':>9} {'wrong':>6} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} "
          f"{'batch':>6}")
    for k, r in results.items():
        print(f"{k:<12} {r['answered']:>9} {r['wrong']:>6} {r['failed']:>7} {r['p50_ms']!s:>8} {r['p99_ms']!s:>8} "
              f"{r['throughput_rps']:>8} {r.get('mean_batch', '-')!s:>6}")
    print(f"wrote {out}")
    bad = any(r["wrong"] or r["failed"] or r["hung_clients"] or r["answered"] != r["requests"]
              for r in results.values())
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
