"""Zoo: eight pruned torchvision CNNs through ORT (plain export, our dense, our sparse), OpenVINO and TVM.

    python benchmarks/zoo.py [--models resnet50,mobilenet_v2] [--rounds 20] [--no-tvm]
                             [--per-layer] [--keep DIR] [--out-json PATH]

Issue #19's "Speed" benchmark. Each architecture is built with random init (torch.manual_seed),
pruned with torch.nn.utils.prune.l1_unstructured (first conv dense, depthwise convs -- groups ==
in_channels == out_channels -- 50 %, every other Conv2d and Linear 90 %), then its BatchNorm
statistics are calibrated on random batches (a few forward passes in train mode, cumulative
averages, then eval). Calibrating after pruning keeps the pruned network's activations at unit
scale; statistics of the unpruned network would shrink them layer after layer. No weights are
downloaded.

At 224x224, batch 1, 1 thread, five runtimes are timed interleaved (rounds of one call of each,
after warm-up calls), medians reported:
  ort-plain   st_deploy.bench.plain_export: torch.onnx.export(dynamo=False, opset 17, symbolic batch) of
              the model with its masks applied, in ORT with default settings (the same file and session
              as `st-deploy bench --runtime ort-plain`);
  ort-dense   model.dense.onnx of st_deploy.export(module, target="onnx") (st_deploy.ort_session);
  openvino    OpenVINO's CPU plugin on that model.dense.onnx, f32 pinned (st_deploy.bench.openvino_rt,
              as `st-deploy bench --runtime openvino`); left out, and said so, when not installed;
  ort-sparse  model.sparse.onnx of that export through st_deploy.ort_session (our kernels);
  tvm-sparse  st_deploy.export(module, target="llvm") loaded with st_deploy.load(threads=1).
Speedups of ort-sparse and tvm-sparse are taken against the best dense time (the fastest of ort-plain,
ort-dense and openvino: `<runtime>_x`, `best_dense`) and against the best dense ORT time (ort-plain,
ort-dense: `<runtime>_x_ort`, the measure of issue #19's targets and of DeepSparse's figures), and
ort-dense against ort-plain. Targets (issue #19): sparse >= 2.0x on
every architecture, >= 3x on ResNet-50, ahead of DeepSparse 1.8's figures on this machine kind
(over ORT dense on a plain export: ResNet-50 2.62x, MobileNetV2 1.34x, EfficientNet-B0 0.82x;
../shared/notes/PLATFORM.md); our dense model >= 0.95x the plain export's speed.
Each runtime's output is compared with the pruned torch model's on the same input (max |diff| /
max |y|). A model whose export fails is recorded with the error and the run goes on.
Writes benchmarks/results/zoo-<machine>.json (or --out-json) and prints the table. On a shared
machine the neighbours' load moves absolute times; the ratios come from one interleaved run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's st_deploy

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import prune  # noqa: E402

import st_deploy  # noqa: E402
from st_deploy.bench.machine import machine_info, machine_slug  # noqa: E402
from st_deploy.bench.output import write_json  # noqa: E402
from st_deploy.bench.plain_export import PLAIN_OPSET, masks_applied, plain_onnx_export, plain_ort_session  # noqa: E402
from st_deploy.models.torchvision_compat import import_torchvision  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ["resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "regnet_y_400mf",
          "convnext_tiny", "densenet121", "shufflenet_v2_x1_0"]
SHAPE = (1, 3, 224, 224)
# DeepSparse 1.8 on this machine kind, 1 thread, over ORT dense on a plain torch.onnx.export of the
# same pruned model (../shared/notes/PLATFORM.md, "Outside references").
DEEPSPARSE = {"resnet50": 2.62, "mobilenet_v2": 1.34, "efficientnet_b0": 0.82}
TARGET_SPARSE = {"resnet50": 3.0}  # every other architecture: DEFAULT_TARGET
DEFAULT_TARGET = 2.0
TARGET_DENSE = 0.95
RUNTIMES = ("ort-plain", "ort-dense", "openvino", "ort-sparse", "tvm-sparse")
ORT_DENSE = ("ort-plain", "ort-dense")
DENSE = ("ort-plain", "ort-dense", "openvino")


def build(name: str, seed: int, calib_batches: int, calib_size: int) -> nn.Module:
    """Random-init torchvision model, pruned (prune hooks left on), BN calibrated, eval mode."""
    tv = import_torchvision()
    torch.manual_seed(seed)
    model = getattr(tv.models, name)(weights=None)
    first = True
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if first:
                first = False  # the first conv stays dense
                continue
            depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
            prune.l1_unstructured(m, "weight", amount=0.5 if depthwise else 0.9)
        elif isinstance(m, nn.Linear):
            prune.l1_unstructured(m, "weight", amount=0.9)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(calib_batches):
            model(torch.randn(calib_size, *SHAPE[1:]))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    return model.eval()


def density(model: nn.Module) -> dict[str, Any]:
    total = nz = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach()
            total += w.numel()
            nz += int((w != 0).sum())
    return {"conv_linear_weights": total, "nonzero": nz, "density": round(nz / total, 4)}


def rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    y = np.asarray(y, dtype=np.float64).reshape(ref.shape)
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30))


def time_interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int) -> dict[str, np.ndarray]:
    """Seconds of each of `rounds` calls per runtime, the runtimes taking turns call by call."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: np.array(v) for k, v in times.items()}


def short_error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    return text if len(text) <= 2000 else text[:2000] + " ..."


def ort_runner(session: Any) -> Callable[[np.ndarray], np.ndarray]:
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def op_summary(per_layer: dict[str, Any], top: int = 8) -> dict[str, Any]:
    """Largest (op:format) shares and nodes of an ort_per_layer result."""
    total = per_layer["total_us"] or 1.0
    ops = sorted(per_layer["by_op_format_us"].items(), key=lambda kv: -kv[1])[:top]
    return {"total_us": round(per_layer["total_us"], 1),
            "by_op_format": [{"op": k, "us": round(v, 1), "share": round(v / total, 3)} for k, v in ops],
            "top_nodes": [{"node": r["node"], "op": r["op"], "format": r["format"], "us": round(r["mean_us"], 1),
                           "share": round(r["share"], 3)} for r in per_layer["nodes"][:top]]}


def plan_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    layers = manifest.get("plan", {}).get("layers", [])
    formats: dict[str, int] = {}
    for lp in layers:
        f = lp.get("runs_as") or lp.get("format", "?")
        formats[f] = formats.get(f, 0) + 1
    out = {"layers": len(layers), "formats": formats, "opaque_ops": manifest.get("opaque_ops", [])}
    pad = manifest.get("channel_padding", {}).get("tensors")
    if pad is not None:
        out["padded_tensors"] = len(pad)
    return out


def run_model(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rec: dict[str, Any] = {"model": name, "errors": {}}
    t0 = time.perf_counter()
    model = build(name, args.seed, args.calib_batches, args.calib_size)
    plain = masks_applied(model)
    rec["weights"] = density(plain)
    rec["build_s"] = round(time.perf_counter() - t0, 1)
    x = np.random.default_rng(args.seed).standard_normal(SHAPE).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy().astype(np.float64)
        ref_plain = plain(torch.from_numpy(x)).numpy().astype(np.float64)
    rec["masks_applied_vs_pruned_rel"] = rel_err(ref_plain, ref)

    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    # ort-plain: torch.onnx.export of the masks-applied model.
    plain_path = work / "plain.onnx"
    try:
        t0 = time.perf_counter()
        plain_onnx_export(model, SHAPE, plain_path)
        rec["plain_export_s"] = round(time.perf_counter() - t0, 1)
        runners["ort-plain"] = ort_runner(plain_ort_session(plain_path, threads=1))
    except Exception as e:  # noqa: BLE001  (a benchmark records the failure and goes on)
        rec["errors"]["ort-plain"] = short_error(e)

    # Ours, ONNX: the pruned module with its prune hooks, straight in.
    onnx_dir = work / "onnx"
    try:
        t0 = time.perf_counter()
        st_deploy.export(model, target="onnx", out=onnx_dir, input_shape=SHAPE, force=True)
        rec["onnx_export_s"] = round(time.perf_counter() - t0, 1)
        manifest = json.loads((onnx_dir / "manifest.json").read_text())
        rec["onnx_plan"] = plan_summary(manifest)
        runners["ort-dense"] = ort_runner(st_deploy.ort_session(onnx_dir / "model.dense.onnx", threads=1))
        runners["ort-sparse"] = ort_runner(st_deploy.ort_session(onnx_dir / "model.sparse.onnx", threads=1))
    except Exception as e:  # noqa: BLE001
        rec["errors"]["onnx"] = short_error(e)
        if args.verbose:
            traceback.print_exc()
    if openvino_missing() is None and (onnx_dir / "model.dense.onnx").is_file():
        try:
            from st_deploy.bench.openvino_rt import OpenVinoRun
            ov_run = OpenVinoRun(onnx_dir / "model.dense.onnx", 1, "f32", SHAPE)
            rec["openvino_precision"] = ov_run.precision
            runners["openvino"] = lambda x, r=ov_run: r(x)[0]
        except Exception as e:  # noqa: BLE001
            rec["errors"]["openvino"] = short_error(e)

    if not args.no_tvm:
        tvm_dir = work / "tvm"
        try:
            t0 = time.perf_counter()
            st_deploy.export(model, target="llvm", out=tvm_dir, input_shape=SHAPE, force=True)
            rec["tvm_export_s"] = round(time.perf_counter() - t0, 1)
            manifest = json.loads((tvm_dir / "manifest.json").read_text())
            rec["tvm_plan"] = plan_summary(manifest)
            runners["tvm-sparse"] = st_deploy.load(tvm_dir, threads=1).run
        except Exception as e:  # noqa: BLE001
            rec["errors"]["tvm"] = short_error(e)
            if args.verbose:
                traceback.print_exc()

    # Outputs against the pruned torch model, same input.
    rec["max_rel_err"] = {}
    for k, run in list(runners.items()):
        try:
            rec["max_rel_err"][k] = float(f"{rel_err(run(x), ref):.3g}")
        except Exception as e:  # noqa: BLE001
            rec["errors"][k] = short_error(e)
            del runners[k]

    order = [k for k in RUNTIMES if k in runners]
    runs = time_interleaved({k: (lambda r=runners[k]: r(x)) for k in order}, args.rounds, args.warmup)
    rec["ms"] = {k: round(float(np.median(v)) * 1e3, 3) for k, v in runs.items()}
    rec["min_ms"] = {k: round(float(np.min(v)) * 1e3, 3) for k, v in runs.items()}
    ms = rec["ms"]
    for pool, suffix in ((DENSE, ""), (ORT_DENSE, "_ort")):
        there = [k for k in pool if k in ms]
        if there:
            best = min(there, key=lambda k: ms[k])
            rec[f"best_dense{suffix}_ms"] = ms[best]
            rec[f"best_dense{suffix}"] = best
            for k in ("ort-sparse", "tvm-sparse"):
                if k in ms:
                    rec[f"{k}_x{suffix}"] = round(ms[best] / ms[k], 3)
    if "ort-plain" in ms and "ort-dense" in ms:
        rec["dense_vs_plain_x"] = round(ms["ort-plain"] / ms["ort-dense"], 3)
    target = TARGET_SPARSE.get(name, DEFAULT_TARGET)
    rec["target_x"] = target
    rec["deepsparse_x"] = DEEPSPARSE.get(name)
    rec["meets"] = {k: (rec[f"{k}_x_ort"] >= target and rec[f"{k}_x_ort"] > (DEEPSPARSE.get(name) or 0.0))
                    for k in ("ort-sparse", "tvm-sparse") if f"{k}_x_ort" in rec}
    if "dense_vs_plain_x" in rec:
        rec["meets"]["dense"] = rec["dense_vs_plain_x"] >= TARGET_DENSE

    if args.per_layer:
        from st_deploy.bench.per_layer import ort_per_layer
        rec["per_layer"] = {}
        paths = {"ort-plain": plain_path, "ort-dense": onnx_dir / "model.dense.onnx",
                 "ort-sparse": onnx_dir / "model.sparse.onnx"}
        for k, p in paths.items():
            if k in runners:
                try:
                    rec["per_layer"][k] = op_summary(ort_per_layer(p, x, threads=1, runs=args.per_layer_runs))
                except Exception as e:  # noqa: BLE001
                    rec["per_layer"][k] = {"error": short_error(e)}
    if not rec["errors"]:
        del rec["errors"]
    return rec


def fmt_x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def fmt_ms(rec: dict[str, Any], k: str) -> str:
    return f"{rec['ms'][k]:.2f}" if k in rec.get("ms", {}) else "-"


def openvino_missing() -> str | None:
    """Why openvino is not timed (None when it is installed)."""
    import importlib.util
    if importlib.util.find_spec("openvino") is None:
        from st_deploy.bench.openvino_rt import INSTALL_HINT
        return f"not installed ({INSTALL_HINT})"
    return None


def table(records: list[dict[str, Any]]) -> str:
    head = ("| model | ORT plain ms | our dense ms | OpenVINO ms | ORT sparse ms | TVM sparse ms | dense vs plain | "
            "ORT sparse x (ORT / best dense) | TVM sparse x (ORT / best dense) | target | DeepSparse x | "
            "max rel err (plain / dense / openvino / sparse / tvm) |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in records:
        errs = r.get("max_rel_err", {})
        err = " / ".join(f"{errs[k]:.1e}" if k in errs else "-" for k in RUNTIMES)
        note = ""
        if r.get("errors"):
            note = " (failed: " + ", ".join(r["errors"]) + ")"
        lines.append(f"| {r['model']}{note} | {fmt_ms(r, 'ort-plain')} | {fmt_ms(r, 'ort-dense')} | "
                     f"{fmt_ms(r, 'openvino')} | {fmt_ms(r, 'ort-sparse')} | {fmt_ms(r, 'tvm-sparse')} | "
                     f"{fmt_x(r.get('dense_vs_plain_x'))} | "
                     f"{fmt_x(r.get('ort-sparse_x_ort'))} / {fmt_x(r.get('ort-sparse_x'))} | "
                     f"{fmt_x(r.get('tvm-sparse_x_ort'))} / {fmt_x(r.get('tvm-sparse_x'))} | "
                     f">= {r.get('target_x', DEFAULT_TARGET):.1f}x | {fmt_x(r.get('deepsparse_x'))} | {err} |")
    return "\n".join(lines)


def provenance() -> dict[str, Any]:
    """What code ran: this checkout's commit and uncommitted paths, and the custom-op library used."""
    import hashlib
    import subprocess
    root = Path(__file__).resolve().parents[1]

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=30).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""
    out: dict[str, Any] = {"st_deploy": str(Path(st_deploy.__file__).parent), "commit": git("rev-parse", "HEAD"),
                           "uncommitted": [ln[3:] for ln in git("status", "--porcelain", "--", "st_deploy", "kernels")
                                           .splitlines()]}
    lib = Path(st_deploy.ort_library_path())
    if lib.is_file():
        out["ort_library"] = {"path": str(lib), "sha256": hashlib.sha256(lib.read_bytes()).hexdigest()[:16],
                              "mtime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(lib.stat().st_mtime))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated torchvision names")
    ap.add_argument("--rounds", type=int, default=20, help="timed interleaved rounds (one call of each runtime)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    ap.add_argument("--no-tvm", action="store_true", help="skip the TVM (llvm) export and timing")
    ap.add_argument("--per-layer", action="store_true",
                    help="also profile the three ONNX models per node (ORT's profiler, not interleaved: "
                         "read the shares, not the times) and record the largest ops")
    ap.add_argument("--per-layer-runs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib-batches", type=int, default=4, help="random batches for BN calibration")
    ap.add_argument("--calib-size", type=int, default=8, help="images per calibration batch")
    ap.add_argument("--keep", type=Path, default=None, help="keep the per-model export folders here")
    ap.add_argument("--out-json", type=Path, default=None,
                    help=f"default {RESULTS}/zoo-<machine>.json")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failed exports")
    args = ap.parse_args(argv)
    names = [m for m in args.models.split(",") if m]
    out_json = args.out_json or RESULTS / f"zoo-{machine_slug()}.json"
    torch.set_num_threads(1)  # the reference forward passes; ORT and TVM get threads=1 explicitly
    started = time.perf_counter()
    code = provenance()
    load_before = os.getloadavg()
    records = []
    with tempfile.TemporaryDirectory(prefix="st-zoo-") as tmp:
        root = args.keep or Path(tmp)
        for name in names:
            work = root / name
            work.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            try:
                rec = run_model(name, args, work)
            except Exception as e:  # noqa: BLE001  (a model that cannot even be built)
                rec = {"model": name, "errors": {"build": short_error(e)}}
                if args.verbose:
                    traceback.print_exc()
            rec["wall_s"] = round(time.perf_counter() - t0, 1)
            rec["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
            records.append(rec)
            ms = rec.get("ms", {})
            print(f"{name:20s} " + "  ".join(f"{k} {v:.2f} ms" for k, v in ms.items())
                  + f"  | sparse {fmt_x(rec.get('ort-sparse_x'))} tvm {fmt_x(rec.get('tvm-sparse_x'))}"
                    f" (over {rec.get('best_dense', '-')})"
                    f" dense/plain {fmt_x(rec.get('dense_vs_plain_x'))}"
                  + (f"  errors: {rec['errors']}" if rec.get("errors") else "")
                  + f"  ({rec['wall_s']:.0f} s)", flush=True)
    elapsed = time.perf_counter() - started
    settings = {"models": names, "input_shape": list(SHAPE), "threads": 1, "batch": 1, "rounds": args.rounds,
                "warmup": args.warmup, "tvm": not args.no_tvm, "seed": args.seed, "opset_plain": PLAIN_OPSET,
                "openvino": openvino_missing() or "CPU plugin, f32 pinned, 1 thread, static input shape",
                "pruning": "torch.nn.utils.prune.l1_unstructured: first Conv2d dense, depthwise "
                           "(groups == in == out channels) 50 %, every other Conv2d and Linear 90 %",
                "bn_calibration": f"after pruning: {args.calib_batches} randn batches of {args.calib_size} in "
                                  f"train mode, cumulative averages, then eval",
                "timing": "interleaved rounds of one call per runtime, warm-up rounds first; medians (min_ms: minima)",
                "speedups": "ort-sparse_x / tvm-sparse_x: best dense ms (min of ort-plain, ort-dense, openvino) / ms; "
                            "*_x_ort: best dense ORT ms (min of ort-plain, ort-dense) / ms, the measure of the "
                            "targets and of DeepSparse's figures; dense_vs_plain_x: ort-plain ms / ort-dense ms",
                "max_rel_err": "max|y - y_torch| / max|y_torch|, same input, pruned torch model (prune hooks on)",
                "targets": {"sparse_x": DEFAULT_TARGET, "resnet50_sparse_x": TARGET_SPARSE["resnet50"],
                            "dense_vs_plain_x": TARGET_DENSE, "deepsparse_x": DEEPSPARSE},
                "load_note": "shared machine (2 vCPUs, other processes may run): absolute times move with the "
                             "neighbours' load; ratios are from one interleaved run",
                "loadavg_before": [round(v, 2) for v in load_before],
                "loadavg_after": [round(v, 2) for v in os.getloadavg()],
                "command": " ".join(["python benchmarks/zoo.py", *sys.argv[1:]]) if argv is None else "main()",
                "elapsed_s": round(elapsed, 1)}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    code_after = provenance()
    if code_after != code:  # e.g. the custom-op library was rebuilt while this ran
        settings["code_changed_during_run"] = code_after
    write_json({"machine": machine_info(), "code": code, "settings": settings, "records": records,
                "table": table(records)}, out_json)
    print()
    print(table(records))
    print(f"\nwrote {out_json} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
