"""CUDA sparse kernels (libst_kernels_cuda.so) against torch/cuDNN dense conv on the same GPU.

Per case: our kernel (CSR / BSR4x1 / depthwise dense or CSR) vs F.conv2d with the densified weight,
fp32 with TF32 off (the fair comparison) and, as a second column, with TF32 on. Both include the
bias. Fully connected layers (the classifiers of the example ticket and MobileNetV2, run first):
our dense and CSR linear kernels vs F.linear (cuBLAS), the same two columns. Timing: CUDA events
around `reps` calls captured in a CUDA graph (so host/launch overhead is not measured; eager
launches when capture fails), medians of `rounds` rounds with the runners interleaved in rotating
order. Each case also checks our output against cuDNN fp32.

    python3 benchmarks/cuda_kernels.py [--quick] [--json PATH] [--time-budget S]

Needs torch with CUDA, apache-tvm-ffi and the built library (installed, or $ST_KERNELS_CUDA_LIB).
Imports only torch + tvm_ffi (st_deploy/kernels/cuda.py is loaded from its file if the package
cannot be imported).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# ImageNet-net depthwise shapes (MobileNetV2 / SuperTickets ImageNet): (channels, input HW, stride)
DW_SHAPES = [(32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1), (192, 28, 2),
             (384, 14, 1), (576, 14, 1), (576, 14, 2), (960, 7, 1)]
SPARSITIES = [0.5, 0.7, 0.9, 0.95]


def load_cuda_module():
    try:
        from st_deploy.kernels import cuda
        return cuda
    except Exception:
        path = REPO / "st_deploy" / "kernels" / "cuda.py"
        spec = importlib.util.spec_from_file_location("st_deploy_kernels_cuda", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


def cases(quick: bool):
    """(op, cin, cout, hw, k, stride, sparsity, fmt, batch)"""
    batches = [1] if quick else [1, 8]
    out = []
    chans = [64, 256] if quick else [64, 128, 256, 512]
    hws = [56, 14] if quick else [56, 28, 14, 7]
    sps = [0.9] if quick else SPARSITIES
    for b in batches:
        for c in chans:
            for hw in hws:
                for s in sps:
                    out.append(("conv1x1", c, c, hw, 1, 1, s, "csr", b))
                out.append(("conv1x1", c, c, hw, 1, 1, 0.9, "bsr4x1", b))
        for s in sps:
            out.append(("conv3x3", 64, 64, 56, 3, 1, s, "csr", b))
        out.append(("conv3x3", 64, 64, 56, 3, 1, 0.9, "bsr4x1", b))
        for k in (3, 5):
            for c, hw, st in (DW_SHAPES[:4] if quick else DW_SHAPES):
                out.append((f"dw{k}x{k}", c, c, hw, k, st, 0.0, "dense", b))
                for s in ([0.9] if quick else SPARSITIES):
                    out.append((f"dw{k}x{k}", c, c, hw, k, st, s, "csr", b))
    return out


# (in_features, out_features): the example ticket's classifier, MobileNetV2's
LINEAR_SHAPES = [(1600, 1000), (1280, 1000)]


def linear_cases(quick: bool):
    """(in_features, out_features, sparsity, fmt, batch); CSR at 0 % is what a dense layer ran as
    before the dense kernel existed."""
    out = []
    for b in ([1] if quick else [1, 8]):
        for fin, fout in (LINEAR_SHAPES[:1] if quick else LINEAR_SHAPES):
            out += [(fin, fout, 0.0, "dense", b), (fin, fout, 0.0, "csr", b), (fin, fout, 0.9, "csr", b)]
    return out


def bench_linear(torch, F, K, case, rounds: int, use_graph: bool, gen) -> dict:
    fin, fout, sp, fmt, batch = case
    w = make_weight(torch, (fout, fin), sp, False, gen)
    bias = torch.randn(fout, generator=gen, device="cuda")
    x = torch.randn((batch, fin), generator=gen, device="cuda")
    layer = K.SparseLinearCUDA.from_dense(w, bias, fmt=fmt)
    out = torch.empty((batch, fout), device="cuda")
    layer(x, out=out)
    K.check()
    torch.backends.cuda.matmul.allow_tf32 = False
    ref = F.linear(x, w, bias)
    err = float((out - ref).abs().max()) / max(1.0, float(ref.abs().max()))

    def tf32(on: bool):
        return lambda: setattr(torch.backends.cuda.matmul, "allow_tf32", on)

    lin = lambda: F.linear(x, w, bias)  # noqa: E731
    reps = 200
    runners = {"ours": Runner(torch, lambda: layer(x, out=out), reps, use_graph),
               "cudnn": Runner(torch, lin, reps, use_graph, before=tf32(False)),
               "tf32": Runner(torch, lin, reps, use_graph, before=tf32(True))}
    med = measure(torch, runners, rounds)
    torch.backends.cuda.matmul.allow_tf32 = False
    K.check()
    # "cudnn" columns hold cuBLAS here (F.linear), under the same keys as the conv rows
    return dict(op="linear", cin=fin, cout=fout, h=1, w=1, k=1, stride=1, sparsity=sp, format=fmt,
                batch=batch, ours_us=round(med["ours"], 3), cudnn_us=round(med["cudnn"], 3),
                speedup=round(med["cudnn"] / med["ours"], 3), cudnn_tf32_us=round(med["tf32"], 3),
                speedup_vs_tf32=round(med["tf32"] / med["ours"], 3), max_rel_err=err, reps=reps,
                rounds=rounds, baseline="cublas (F.linear)",
                timing="graph" if runners["ours"].graph is not None else "eager")


def make_weight(torch, shape, sparsity, block4, gen):
    w = torch.randn(shape, generator=gen, device="cuda")
    if block4:
        keep = torch.rand(((shape[0] + 3) // 4,) + tuple(shape[1:]), generator=gen, device="cuda") >= sparsity
        keep = keep.repeat_interleave(4, dim=0)[: shape[0]]
    else:
        keep = torch.rand(shape, generator=gen, device="cuda") >= sparsity
    return w * keep


class Runner:
    """fn() timed either through a captured CUDA graph of `reps` calls or as eager launches."""

    def __init__(self, torch, fn, reps: int, use_graph: bool, before=None):
        self.torch, self.fn, self.reps, self.before = torch, fn, reps, before
        self.graph = None
        if use_graph:
            try:
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    if before:
                        before()
                    fn()  # warm-up on the side stream (cuDNN autotuning happens outside capture)
                torch.cuda.current_stream().wait_stream(s)
                g = torch.cuda.CUDAGraph()
                if before:
                    before()
                with torch.cuda.graph(g):
                    for _ in range(reps):
                        fn()
                self.graph = g
            except Exception as e:  # noqa: BLE001
                print(f"  (graph capture failed, timing eager launches: {e})", file=sys.stderr)
                self.graph = None
                torch.cuda.synchronize()

    def time_us(self) -> float:
        torch = self.torch
        if self.before:
            self.before()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        if self.graph is not None:
            self.graph.replay()
        else:
            for _ in range(self.reps):
                self.fn()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) * 1000.0 / self.reps


def measure(torch, runners: dict, rounds: int) -> dict:
    names = list(runners)
    times = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            times[n].append(runners[n].time_us())
    return {n: statistics.median(t) for n, t in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small subset (< 60 s)")
    ap.add_argument("--json", type=Path, help="write the rows as JSON here")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--time-budget", type=float, default=0.0,
                    help="stop starting new cases after this many seconds (0 = no limit)")
    ap.add_argument("--no-graph", action="store_true", help="time eager launches, not CUDA graphs")
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to benchmark", file=sys.stderr)
        return 2
    K = load_cuda_module()
    ok, why = K.available()
    if not ok:
        print(f"CUDA kernels unavailable: {why}", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    rounds = args.rounds or (5 if args.quick else 7)
    gen = torch.Generator(device="cuda")
    gen.manual_seed(0)
    dev_name = torch.cuda.get_device_name()
    print(f"# {dev_name}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"library {K.library_path()}")
    hdr = (f"{'op':8} {'cin':>4} {'cout':>4} {'hw':>4} {'k':>2} {'s':>2} {'sp':>5} {'fmt':7} {'N':>2} "
           f"{'ours_us':>9} {'cudnn_us':>9} {'tf32_us':>9} {'speedup':>7} {'vs_tf32':>7} {'err':>8}")
    print(hdr)
    rows = []
    t_start = time.perf_counter()
    all_cases = cases(args.quick)
    skipped = 0
    for case in linear_cases(args.quick):
        try:
            row = bench_linear(torch, F, K, case, rounds, not args.no_graph, gen)
        except Exception as e:  # noqa: BLE001  (one failing case must not end the run)
            print(f"linear {case}: FAILED {e}")
            rows.append(dict(op="linear", cin=case[0], cout=case[1], sparsity=case[2], format=case[3],
                             batch=case[4], error=str(e)))
            continue
        rows.append(row)
        print(f"{'linear':8} {row['cin']:4} {row['cout']:4} {'-':>4} {'-':>2} {'-':>2} {row['sparsity']:5.2f} "
              f"{row['format']:7} {row['batch']:2} {row['ours_us']:9.1f} {row['cudnn_us']:9.1f} "
              f"{row['cudnn_tf32_us']:9.1f} {row['speedup']:7.2f} {row['speedup_vs_tf32']:7.2f} "
              f"{row['max_rel_err']:8.1e}  (baseline: cuBLAS)", flush=True)
    for (op, cin, cout, hw, k, stride, sp, fmt, batch) in all_cases:
        if args.time_budget and time.perf_counter() - t_start > args.time_budget:
            skipped += 1
            continue
        try:
            depthwise = op.startswith("dw")
            pad = (k - 1) // 2
            groups = cin if depthwise else 1
            w = make_weight(torch, (cout, 1 if depthwise else cin, k, k), sp, fmt == "bsr4x1", gen)
            bias = torch.randn(cout, generator=gen, device="cuda")
            x = torch.randn((batch, cin, hw, hw), generator=gen, device="cuda")
            layer = K.SparseConv2dCUDA.from_dense(w, bias, stride=stride, padding=pad, groups=groups,
                                                  fmt=fmt)
            out = torch.empty(layer.output_shape(x.shape), device="cuda")
            ref = F.conv2d(x, w, bias, stride=stride, padding=pad, groups=groups)
            layer(x, out=out)
            K.check()
            err = float((out - ref).abs().max()) / max(1.0, float(ref.abs().max()))
            # reps so one timed chunk is ~2 ms of the dense conv
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(3):
                F.conv2d(x, w, bias, stride=stride, padding=pad, groups=groups)
            b.record()
            b.synchronize()
            per = max(a.elapsed_time(b) / 3, 1e-3)
            reps = int(min(200, max(5, 2.0 / per)))

            def tf32_off():
                torch.backends.cudnn.allow_tf32 = False

            def tf32_on():
                torch.backends.cudnn.allow_tf32 = True

            conv = lambda: F.conv2d(x, w, bias, stride=stride, padding=pad, groups=groups)  # noqa: E731
            runners = {
                "ours": Runner(torch, lambda: layer(x, out=out), reps, not args.no_graph),
                "cudnn": Runner(torch, conv, reps, not args.no_graph, before=tf32_off),
                "tf32": Runner(torch, conv, reps, not args.no_graph, before=tf32_on),
            }
            med = measure(torch, runners, rounds)
            tf32_off()
            K.check()
        except Exception as e:  # noqa: BLE001  (one failing case must not end the run)
            print(f"{op} {cin}->{cout} {hw}x{hw} k{k} s{stride} sp{sp} {fmt} N{batch}: FAILED {e}")
            rows.append(dict(op=op, cin=cin, cout=cout, h=hw, w=hw, k=k, stride=stride, sparsity=sp,
                             format=fmt, batch=batch, error=str(e)))
            continue
        row = dict(op=op, cin=cin, cout=cout, h=hw, w=hw, k=k, stride=stride, sparsity=sp, format=fmt,
                   batch=batch, ours_us=round(med["ours"], 3), cudnn_us=round(med["cudnn"], 3),
                   speedup=round(med["cudnn"] / med["ours"], 3),
                   cudnn_tf32_us=round(med["tf32"], 3), speedup_vs_tf32=round(med["tf32"] / med["ours"], 3),
                   max_rel_err=err, reps=reps, rounds=rounds,
                   timing="graph" if runners["ours"].graph is not None else "eager")
        rows.append(row)
        print(f"{op:8} {cin:4} {cout:4} {hw:4} {k:2} {stride:2} {sp:5.2f} {fmt:7} {batch:2} "
              f"{row['ours_us']:9.1f} {row['cudnn_us']:9.1f} {row['cudnn_tf32_us']:9.1f} "
              f"{row['speedup']:7.2f} {row['speedup_vs_tf32']:7.2f} {err:8.1e}", flush=True)
    if skipped:
        print(f"# time budget {args.time_budget:.0f} s reached: {skipped} of {len(all_cases)} cases not run")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(device=dev_name, torch=torch.__version__,
                                             cudnn=torch.backends.cudnn.version(), rows=rows,
                                             skipped=skipped), indent=1))
        print(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
