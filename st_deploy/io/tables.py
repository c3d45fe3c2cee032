"""Human-readable tables: rich on a terminal, plain aligned text when piped."""

from __future__ import annotations

import sys
from typing import Any, Sequence

import click


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                footer: Sequence[str] = ()) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        table = Table(title=title, show_lines=False)
        for i, c in enumerate(columns):
            table.add_column(c, justify="left" if i == 0 else "right")
        for r in rows:
            table.add_row(*[str(v) for v in r])
        console = Console()
        console.print(table)
        for line in footer:
            console.print(line)
        return
    cells = [list(columns)] + [[str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    click.echo(title)
    for n, row in enumerate(cells):
        click.echo("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))
    for line in footer:
        click.echo(line)


def _fmt_flops(f: int) -> str:
    return f"{f / 1e6:.2f}M"


def print_inspect(report: dict[str, Any]) -> None:
    rows = []
    for layer in report["layers"]:
        unsel = "-" if layer["unselected"] is None else str(layer["unselected"])
        rows.append([layer["name"], layer["op"], "x".join(map(str, layer["shape"])),
                     f"{100 * layer['sparsity']:.1f}%", unsel, _fmt_flops(layer["flops"]),
                     _fmt_flops(layer["nonzero_flops"])])
    t = report["totals"]
    footer = [
        f"params {t['params']:,}  nonzero {t['nonzero_params']:,} "
        f"({100 * (1 - t['nonzero_params'] / max(t['params'], 1)):.1f}% zeros)",
        f"GFLOP at {'x'.join(map(str, report['input_shape']))}: dense {t['gflop_dense']:.3f}  "
        f"nonzero {t['gflop_nonzero']:.3f}  after compaction (estimate) {t['gflop_after_compaction_estimate']:.3f}",
        f"unselected hidden channels (|gamma| <= {report['threshold']:g}): {t['unselected_channels']}",
        f"({report['flop_convention']})",
    ]
    if report.get("task_from"):
        footer.append(f"task {report['task']}: from {report['task_from']}")
    if report.get("input_shape_from") and report["input_shape_from"] != "given":
        footer.append(f"input shape: {report['input_shape_from']}; --input-shape N,C,H,W for another")
    title = f"{report['ticket']} ({report['family']}{', ' + report['variant'] if report.get('variant') else ''}, {report['task']})"
    print_table(title, ["layer", "op", "shape", "sparsity", "unselected", "FLOPs", "nonzero FLOPs"], rows, footer)


def print_compact(report: dict[str, Any]) -> None:
    p, f, e = report["params"], report["flops"], report["error"]
    rows = [
        ["params (dense)", f"{p['before']['dense']:,}", f"{p['after']['dense']:,}"],
        ["params (nonzero)", f"{p['before']['nonzero']:,}", f"{p['after']['nonzero']:,}"],
        ["GFLOP (dense)", f"{f['before']['dense'] / 1e9:.3f}", f"{f['after']['dense'] / 1e9:.3f}"],
        ["GFLOP (nonzero)", f"{f['before']['nonzero'] / 1e9:.3f}", f"{f['after']['nonzero'] / 1e9:.3f}"],
        ["graph nodes", str(report["nodes"]["before"]), str(report["nodes"]["after"])],
    ]
    removed = report.get("removed", {})
    footer = []
    if removed:
        footer.append("removed: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in removed.items()))
    footer.append(f"channels removed: {report['channels']['removed']}")
    kind = "exact" if report["exact"] else f"approximate (threshold {report['threshold']:g})"
    footer.append(f"{kind}; measured on a seeded {'x'.join(map(str, e['input_shape']))} input: "
                  f"max abs error {e['max_abs']:.3g}, {e['max_rel']:.3g} of max|y|")
    print_table(f"compaction at {'x'.join(map(str, report['input_shape']))}", ["", "before", "after"], rows, footer)


def print_manifest(manifest: dict[str, Any], folder: Any) -> None:
    """What an export wrote: per-layer formats, fidelity, files."""
    plan = manifest["plan"]
    layers = plan["layers"]
    rows = []
    for lp in layers:
        pred = lp.get("predicted_us", {}).get(lp["format"])
        rows.append([lp["name"], lp.get("kind", ""), f"{100 * lp.get('sparsity', 0):.1f}%", lp["format"],
                     "-" if pred is None else f"{pred:.1f}", lp.get("reason", "")[:48]])
    counts: dict[str, int] = {}
    for lp in layers:
        counts[lp["format"]] = counts.get(lp["format"], 0) + 1
    fid = manifest["fidelity"]
    footer = [f"target {manifest['target']['name']}: " + ", ".join(f"{n} {f}" for f, n in sorted(counts.items()))
              + (f"; predicted conv time {plan['predicted_total_us'] / 1e3:.2f} ms" if "predicted_total_us" in plan else "")]
    if plan.get("cost_table"):
        note = plan.get("cost_table_note")
        footer.append(f"cost table {plan['cost_table']}" + (f": {note}" if note else ""))
    for k, v in fid["files"].items():
        footer.append(f"fidelity {k} ({fid['measured_on']}): " + ", ".join(f"{m} {x:.3g}" for m, x in v.items()))
    for w in manifest["warnings"]:
        footer.append(f"warning: {w}")
    footer.append(f"wrote {folder}: " + ", ".join(sorted(manifest["files"])))
    print_table("per-layer plan", ["layer", "kind", "sparsity", "format", "pred. us", "reason"], rows, footer)


def print_per_layer(runtime: str, prof: dict[str, Any], top: int = 15) -> None:
    rows = [[r["node"][:60], r["op"], r["format"], f"{r['mean_us']:.1f}", f"{100 * r['share']:.1f}%"]
            for r in prof["nodes"][:top]]
    stat = prof.get("stat", "mean")
    footer = [f"{len(prof['nodes'])} nodes, {prof['total_us'] / 1e3:.2f} ms per run in nodes "
              f"({prof['threads']} thread(s), {prof['runs']} profiled runs)"]
    footer += [f"  {k}: {v / 1e3:.2f} ms ({100 * v / max(prof['total_us'], 1e-9):.1f}%)"
               for k, v in sorted(prof["by_op_format_us"].items(), key=lambda kv: -kv[1])]
    if prof.get("method"):
        footer.append(f"method: {prof['method']}")
    if prof.get("run_us"):
        ru = prof["run_us"]
        footer.append(f"whole run: {ru['uninstrumented_median'] / 1e3:.2f} ms uninstrumented, "
                      f"{ru['instrumented_median'] / 1e3:.2f} ms with the per-call timer "
                      f"({prof.get('calls_per_run', '?')} calls per run)")
    if prof.get("note"):
        footer.append(("" if prof.get("attributed", True) else "WARNING: ") + prof["note"])
    print_table(f"per layer: {runtime} ({prof['model']}), top {top}", ["node", "op", "format", f"{stat} us", "share"],
                rows, footer)
