"""st-deploy command line: parse, call the API, print. No logic lives here."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from .artifact import read_manifest
from . import __version__
from .errors import DeployError, FidelityError


def parse_shape(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.replace("x", ",").split(","))
    except ValueError:
        raise DeployError(f"--input-shape {value!r}: expected N,C,H,W") from None
    if len(shape) != 4 or min(shape) <= 0:
        raise DeployError(f"--input-shape {value!r}: expected four positive ints N,C,H,W")
    return shape


def ticket_options(f: Callable) -> Callable:
    """Options every command that reads a ticket accepts."""
    @click.option("--model", metavar="PKG.MODULE:FACTORY",
                  help="Factory building the nn.Module a plain masked state_dict belongs to.")
    @click.option("--model-kwargs", metavar="JSON", default=None, help="Keyword arguments for --model.")
    @click.option("--task", type=click.Choice(["classification", "segmentation", "keypoints"]),
                  default="classification", show_default=True, help="Task of a --model ticket.")
    @functools.wraps(f)
    def wrapper(*args: Any, model: str | None, model_kwargs: str | None, task: str, **kwargs: Any):
        load_kwargs: dict[str, Any] = {}
        if model is not None:
            try:
                mk = json.loads(model_kwargs) if model_kwargs else {}
            except ValueError:
                raise DeployError(f"--model-kwargs {model_kwargs!r}: not valid JSON") from None
            if not isinstance(mk, dict):
                raise DeployError("--model-kwargs: expected a JSON object")
            load_kwargs = {"model": model, "model_kwargs": mk, "task": task}
        return f(*args, load_kwargs=load_kwargs, **kwargs)
    return wrapper


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="st-deploy")
@click.option("--debug", is_flag=True, help="Show Python tracebacks on errors.")
def cli(debug: bool) -> None:
    """Turn pruned networks ("tickets") into real sparse inference.

    A ticket is a SuperTickets checkpoint (X.state_dict + X.yml), a packed ticket.pt,
    or a masked state_dict with --model. Start with `st-deploy example -o DIR`.
    """


@cli.command()
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path),
              help="Folder to write the example ticket into.")
@click.option("--seed", default=0, show_default=True, help="Seed for weights, selection and masks.")
@click.option("--sparsity", default=0.9, show_default=True, help="Global magnitude mask sparsity.")
@click.option("--force", is_flag=True, help="Replace an existing folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def example(out: Path, seed: int, sparsity: float, force: bool, as_json: bool) -> None:
    """Write the built-in example ticket: the paper's ImageNet supernet, random selection, 90 % masks."""
    from .api import make_example
    path = make_example(out, seed=seed, sparsity=sparsity, force=force)
    if as_json:
        emit_json({"state_dict": str(path), "seed": seed, "sparsity": sparsity})
    else:
        click.echo(f"wrote {path} (+ .yml, .json)")


@cli.command("inspect")
@click.argument("ticket", type=click.Path(path_type=Path))
@click.option("--threshold", default=0.0, show_default=True,
              help="A hidden channel is unselected when |gamma| of its selection BN is <= this.")
@click.option("--input-shape", default=None, metavar="N,C,H,W", help="Shape for FLOPs (default: task's).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@ticket_options
def inspect_cmd(ticket: Path, threshold: float, input_shape: str | None, as_json: bool,
                load_kwargs: dict) -> None:
    """Per-layer table (shape, mask sparsity, unselected channels, FLOPs) and totals."""
    from .api import inspect
    from .io.tables import print_inspect
    report = inspect(ticket, threshold=threshold, input_shape=parse_shape(input_shape), **load_kwargs)
    emit_json(report) if as_json else print_inspect(report)


@cli.command()
@click.argument("ticket", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="ticket.pt to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@ticket_options
def pack(ticket: Path, out: Path, force: bool, as_json: bool, load_kwargs: dict) -> None:
    """Make a single-file ticket.pt from a SuperTickets checkpoint or a --model state_dict."""
    from .api import load_ticket, pack as pack_api
    t = load_ticket(ticket, **load_kwargs)
    path = pack_api(t, out, force=force)
    if as_json:
        emit_json({"ticket": str(path), "family": t.family, "name": t.name, "sha256": t.sha256})
    else:
        click.echo(f"wrote {path} ({t.family} ticket {t.name!r})")


def main(argv: list[str] | None = None) -> None:
    """Entry point: DeployError -> one line on stderr and its exit code (2), no traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        rv = cli.main(args=args, prog_name="st-deploy", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except DeployError as e:
        if debug:
            raise
        click.echo(f"st-deploy: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # a bug of ours, or an input we failed to check
        if debug:
            raise
        click.echo(f"st-deploy: internal error: {type(e).__name__}: {str(e)[:300]} "
                   f"(rerun with --debug for the traceback)", err=True)
        sys.exit(3)
    sys.exit(rv if isinstance(rv, int) else 0)



@cli.command("compact")
@click.argument("ticket", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="compact.pt to write.")
@click.option("--threshold", default=0.0, show_default=True,
              help="Also drop channels with |gamma| <= T (T > 0 is approximate; the report says by how much).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@ticket_options
def compact_cmd(ticket: Path, out: Path, threshold: float, force: bool, as_json: bool, load_kwargs: dict) -> None:
    """Remove unselected ops and dead channels exactly, fold constants and BN; write compact.pt."""
    from .api import compact, save_ticket
    if out.exists() and not force:
        raise DeployError(f"{out}: exists (pass --force to overwrite)")
    result = compact(ticket, threshold=threshold, **load_kwargs)
    save_ticket(result.ticket, out, force=force)
    if as_json:
        emit_json({"out": str(out), **result.report})
        return
    from .io.tables import print_compact
    print_compact(result.report)
    click.echo(f"wrote {out}")


@cli.command("export")
@click.argument("ticket", type=click.Path(path_type=Path))
@click.option("--target", default="llvm", show_default=True,
              help="onnx, llvm (this CPU), aarch64, rasp4, cuda, or a TVM target as JSON.")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), default=None,
              help="Artifact folder (default: ./<ticket name>.<target>).")
@click.option("--input-shape", default=None, metavar="N,C,H,W", help="Default: the ticket task's shape.")
@click.option("--format", "fmt", type=click.Choice(["auto", "dense", "sparse"]), default="auto", show_default=True,
              help="Per-layer format: chosen by measured cost (auto), or forced.")
@click.option("--tolerance", default=1e-4, show_default=True,
              help="Fail (exit 1, nothing written) above this relative error against the ticket.")
@click.option("--arch", default=None, help="CUDA architecture for --target cuda (default sm_80).")
@click.option("--cost-table", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Cost table that prices --format auto/sparse (default: for a TVM target, the table `st-deploy "
                   "tune --target T --rpc/--tracker` measured on a board for it, else this machine's; the manifest's "
                   "plan names the one used).")
@click.option("--force", is_flag=True, help="Replace an existing artifact folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.option("--triton-repo", type=click.Path(path_type=Path), default=None,
              help="--target onnx: also write a Triton model repository here (REPO/NAME/config.pbtxt, 1/model.onnx, "
                   "our custom-op library).")
@click.option("--triton-instances", default=1, show_default=True, help="Instance count in the Triton config.")
@click.option("--triton-op-library", default=None, metavar="PATH",
              help="Path of the custom-op library where Triton runs (default: its copy in the repository, as written).")
@ticket_options
def export_cmd(ticket: Path, target: str, out: Path | None, input_shape: str | None, fmt: str, tolerance: float,
               arch: str | None, cost_table: Path | None, force: bool, as_json: bool, triton_repo: Path | None,
               triton_instances: int, triton_op_library: str | None, load_kwargs: dict) -> None:
    """Compact TICKET and export it for TARGET into an artifact folder with a manifest."""
    if triton_repo is not None and target != "onnx":
        raise DeployError("--triton-repo needs --target onnx (Triton's onnxruntime backend)")
    from .api import export, load_ticket
    t = load_ticket(ticket, **load_kwargs)
    if out is None:
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in target)[:40]
        out = Path(f"{t.name or 'ticket'}.{slug}")
    if arch:
        if target != "cuda":
            raise DeployError("--arch applies to --target cuda only")
        target = f"cuda --arch {arch}"
    folder = export(t, target=target, out=out, input_shape=parse_shape(input_shape), format=fmt,
                    tolerance=tolerance, force=force, cost_table=cost_table)
    manifest = read_manifest(folder)
    triton = None
    if triton_repo is not None:
        from .serve.triton import write_triton_repo
        triton = write_triton_repo(folder, triton_repo, name=t.name or None, instances=triton_instances,
                                   op_library=triton_op_library, force=force)
    if as_json:
        emit_json({**manifest, "triton_model": str(triton)} if triton else manifest)
        return
    from .io.tables import print_manifest
    print_manifest(manifest, folder)
    if triton:
        click.echo(f"wrote Triton model {triton} (config.pbtxt, 1/model.onnx)")


@cli.command("tune")
@click.option("--target", default="llvm", show_default=True,
              help="Target whose kernels to measure: llvm here; with --rpc/--tracker the board's (aarch64, rasp4, "
                   "or llvm for this machine's own rpc-server).")
@click.option("--quick", is_flag=True, help="A few shapes only (seconds, not minutes).")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), default=None,
              help="Cost table to write (default: the cache the planner reads: per machine, or per target and board "
                   "with --rpc/--tracker).")
@click.option("--rpc", default=None, metavar="HOST:PORT",
              help="Measure on a board's RPC server (st-deploy rpc-server): each layer built for --target with TVM, "
                   "timed on the board; export --target T --format auto then plans with the board's times.")
@click.option("--tracker", default=None, metavar="HOST:PORT", help="Reach the board through a TVM RPC tracker.")
@click.option("--key", default=None, help="Device key of the board at the tracker.")
def tune_cmd(target: str, quick: bool, out: Path | None, rpc: str | None, tracker: str | None,
             key: str | None) -> None:
    """Measure the per-layer cost table the planner uses to choose dense, CSR or BSR.

    Here: ONNX Runtime on this CPU. With --rpc or --tracker/--key: TVM on a real board (an
    emulated one, or one that does not say what it is, is refused with the reason).
    """
    if rpc or tracker:
        from .board.tuning import tune_board
        path = tune_board(target, rpc=rpc, tracker=tracker, key=key, quick=quick, out=out, log=click.echo)
        click.echo(f"wrote {path}")
        return
    from .plan import tune
    click.echo(f"wrote {tune(target=target, quick=quick, out=out)}")


def _int_list(value: str, flag: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise DeployError(f"{flag} {value!r}: expected comma-separated integers") from None
    if not items or min(items) <= 0:
        raise DeployError(f"{flag} {value!r}: expected positive integers")
    return items


@cli.command("bench")
@click.argument("ticket", type=click.Path(path_type=Path))
@click.option("--runtime", "runtimes", default=None,
              help="Comma-separated: torch, torch-compact, ort-plain, ort-dense, ort-sparse, openvino, openvino-bf16, "
                   "tvm-dense, tvm-sparse, or all. Default: torch,ort-dense,ort-sparse for a ticket; for an artifact "
                   "folder, what it serves (ONNX: ort-dense,ort-sparse; TVM: tvm-sparse, or tvm-dense if exported "
                   "--format dense). ort-plain: ONNX Runtime, default settings, on a plain torch.onnx.export of the "
                   "ticket (what a user has without st-deploy). openvino: OpenVINO's CPU plugin on model.dense.onnx, "
                   "f32 pinned (pip install \"st-deploy[openvino]\"); openvino-bf16: the same in bf16, only when "
                   "named. all: every runtime but openvino-bf16 (openvino when installed; it says so when not).")
@click.option("--threads", default="1", show_default=True, help="Comma-separated thread counts.")
@click.option("--batch", "batches", default="1", show_default=True, help="Comma-separated batch sizes.")
@click.option("--warmup", default=10, show_default=True)
@click.option("--repeat", default=100, show_default=True)
@click.option("--min-time", default=0.0, show_default=True, help="Minimum timed seconds per configuration.")
@click.option("--baseline", default="best-dense", show_default=True,
              help="Runtime the speedups are against. best-dense: at each threads/batch, the fastest dense f32 "
                   "runtime timed (torch, ort-plain, ort-dense, openvino, tvm-dense); the table and JSON "
                   "(baseline_runtime) say which. Or name one runtime of the run.")
@click.option("--input-shape", default=None, metavar="N,C,H,W")
@click.option("--target", default="llvm", show_default=True, help="TVM target of the tvm-* runtimes.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write JSON here.")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), default=None, help="Write CSV here.")
@click.option("--plot", "plot_out", type=click.Path(path_type=Path), default=None, help="Write a PNG plot here.")
@click.option("--per-layer", is_flag=True,
              help="Also time each layer (which kernel and format ran): ONNX Runtime's profiler for ort-*, "
                   "a per-call timer on the Relax VM's call instructions for tvm-*; at every --threads value, "
                   "with what a thread count gained per layer size.")
@click.option("--memory/--no-memory", default=True, show_default=True,
              help="After the timing, measure each configuration's peak resident memory (peak MB) in its own "
                   "fresh process: load, cold call, warm-up, 5 calls. It is the whole process (Python, st-deploy "
                   "with torch, the runtime library); 'model MB' subtracts a baseline process per runtime library "
                   "that imports the same and loads no model. Costs a few seconds per configuration.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="cuda: ORT's CUDA provider for ort-dense and TVM cuda artifacts for tvm-*.")
@click.option("--rpc", default=None, metavar="HOST:PORT", help="Time a TVM artifact on a board's RPC server.")
@click.option("--tracker", default=None, metavar="HOST:PORT", help="Reach the board through a TVM RPC tracker.")
@click.option("--key", default=None, help="Device key of the board at the tracker.")
@click.option("--boards", default=1, show_default=True,
              help="With --tracker/--key: spread the repeats over this many boards registered under the key, "
                   "one record per board.")
@ticket_options
def bench_cmd(ticket: Path, runtimes: str | None, threads: str, batches: str, warmup: int, repeat: int,
              min_time: float, baseline: str, input_shape: str | None, target: str, json_out: Path | None,
              csv_out: Path | None, plot_out: Path | None, per_layer: bool, memory: bool, device: str, rpc: str | None,
              tracker: str | None, key: str | None, boards: int, load_kwargs: dict) -> None:
    """Latency of TICKET (or an exported artifact folder) across runtimes, side by side.

    With --rpc or --tracker/--key the TVM artifact (exported for --target, or the folder given)
    runs on the remote board instead.
    """
    from .bench import BenchSource, bench, print_results, write_csv, write_json, write_plot
    from .bench.runtimes import choose_runtimes
    from .loaders import load_ticket
    if ticket.is_dir():
        source = BenchSource(ticket=None, artifact=ticket, target=target)
    else:
        source = BenchSource(ticket=load_ticket(ticket, **load_kwargs), target=target)
    asked = runtimes if runtimes in (None, "all") else [r.strip() for r in runtimes.split(",") if r.strip()]
    names, chosen = choose_runtimes(source, asked, device)
    if rpc or tracker or boards != 1:
        _remote_bench(source, target, rpc, tracker, key, boards, repeat, _int_list(threads, "--threads"),
                      parse_shape(input_shape), json_out, csv_out, plot_out)
        return
    if chosen:
        click.echo(chosen)
    with _progress() as update:
        result = bench(source, asked, _int_list(threads, "--threads"), _int_list(batches, "--batch"),
                       warmup=warmup, repeat=repeat, min_time=min_time, baseline=baseline,
                       input_shape=parse_shape(input_shape), progress=update, device=device,
                       memory=memory)
    print_results(result)
    if per_layer:
        counts = _int_list(threads, "--threads")
        by_threads = {t: _per_layer(source, names, t, result["input_shape"]) for t in counts}
        result["per_layer"] = by_threads[counts[0]]
        if len(counts) > 1:
            result["per_layer_by_threads"] = {str(t): v for t, v in by_threads.items()}
            result["per_layer_scaling"] = _per_layer_scaling(by_threads, counts)
    for out, write in ((json_out, write_json), (csv_out, write_csv), (plot_out, write_plot)):
        if out is not None:
            click.echo(f"wrote {write(result, out)}")


def _remote_bench(source: Any, target: str, rpc: str | None, tracker: str | None, key: str | None, boards: int,
                  repeat: int, threads: list[int], shape: tuple[int, ...] | None, json_out: Path | None,
                  csv_out: Path | None, plot_out: Path | None) -> None:
    """bench --rpc/--tracker: the artifact on one board or --boards N of them, checked against the ticket."""
    from .bench import print_results, write_csv, write_json, write_plot
    from .bench.core import artifact_input_shape
    from .bench.fleet import remote_result
    from .bench.rpc import artifact_reference
    if not (rpc or tracker):
        raise DeployError("--boards needs --tracker HOST:PORT --key KEY")
    folder = source.exported(target, "auto")
    reference, how = artifact_reference(folder, source.ticket, shape or artifact_input_shape(folder))
    click.echo(how)
    result = remote_result(folder, rpc, tracker, key, boards=boards, repeat=repeat, threads=threads,
                           input_shape=shape, reference=reference)
    print_results(result)
    for r in result["records"]:
        d = r.get("device") or {}
        click.echo(f"board {r['board_index']} ({r.get('board') or 'address not reported'}): {r['threads']} thread(s), "
                   f"{r['n']} repeats, p50 {r['p50_ms']:.3f} ms, "
                   + ("EMULATED" if r.get("emulated") else "real" if r.get("emulated") is False else "emulated?")
                   + f", {d.get('board_model') or d.get('cpu') or 'facts not reported'}")
    if json_out is not None:
        click.echo(f"wrote {write_json(result, json_out)}")
    if csv_out is not None:
        # The CSV's columns are fixed: an emulated board's rows say so in their runtime name.
        marked = [{**r, "runtime": r["runtime"] + (" (emulated board)" if r.get("emulated") else "")}
                  for r in result["records"]]
        click.echo(f"wrote {write_csv({**result, 'records': marked}, csv_out)}")
    if plot_out is not None:
        # Emulated times say nothing about the board's speed: they never sit in a plot beside real ones.
        real = [r for r in result["records"] if r.get("emulated") is False]
        if real:
            click.echo(f"wrote {write_plot({**result, 'records': real}, plot_out)}"
                       + (f" ({len(result['records']) - len(real)} emulated/unknown board record(s) left out)"
                          if len(real) < len(result["records"]) else ""))
        else:
            click.echo(f"--plot: {plot_out} not written: every board was emulated or did not say whether it is "
                       f"(emulated times are not plotted)")
    failed = [r for r in result["records"] if r.get("failed")]
    if failed:
        raise FidelityError(f"{len(failed)} board run(s) failed: {failed[0]['failure']}")


class _progress:
    """A progress bar on a terminal, nothing when piped."""

    def __enter__(self) -> Callable[[int, int], None]:
        self.bar = None
        if not sys.stderr.isatty():
            return lambda done, total: None
        from rich.progress import Progress
        self.bar = Progress(transient=True)
        self.bar.start()
        task = self.bar.add_task("benchmarking", total=None)

        def update(done: int, total: int) -> None:
            self.bar.update(task, completed=done, total=total)
        return update

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


def _per_layer_scaling(by_threads: dict[int, dict[str, Any]], counts: list[int]) -> dict[str, Any]:
    """Per runtime profiled at every thread count: time per bucket of layer size, first count vs each other."""
    from .bench.per_layer import scaling_by_layer_size
    out: dict[str, Any] = {}
    first = by_threads[counts[0]]
    for runtime, prof in first.items():
        if "nodes" not in prof:
            continue
        for t in counts[1:]:
            other = by_threads[t].get(runtime, {})
            if "nodes" not in other:
                continue
            rows = scaling_by_layer_size(prof, other)
            out.setdefault(runtime, {})[str(t)] = rows
            click.echo(f"per-layer scaling: {runtime}, {counts[0]} -> {t} threads, by layer time at {counts[0]}")
            for r in rows:
                if r["layers"]:
                    click.echo(f"  {r['layer_us']:>10s} us  {r['layers']:4d} layers  {r['first_us']:9.0f} -> "
                               f"{r['then_us']:9.0f} us  ({r['scaling']}x)")
    return out


def _per_layer(source: Any, names: list[str], threads: int, shape: list[int]) -> dict[str, Any]:
    from .bench.core import seeded_input
    from .bench.per_layer import ort_per_layer, tvm_per_layer
    from .io.tables import print_per_layer
    out: dict[str, Any] = {}
    x = seeded_input([1, *shape[1:]])
    for runtime in names:
        if runtime in ("ort-dense", "ort-sparse", "ort-plain"):
            if runtime == "ort-plain":
                model = source.plain_onnx()
            else:
                folder = source.exported("onnx")
                model = folder / ("model.dense.onnx" if runtime == "ort-dense" else "model.sparse.onnx")
            out[runtime] = ort_per_layer(model, x, threads=threads)
        elif runtime in ("tvm-dense", "tvm-sparse"):
            folder = source.exported(source.target, "auto" if runtime == "tvm-sparse" else "dense")
            try:
                out[runtime] = tvm_per_layer(folder, x, threads=threads)
            except DeployError as e:
                click.echo(f"per-layer: {runtime} not profiled: {e}")
                out[runtime] = {"error": str(e)}
                continue
        else:
            click.echo(f"per-layer: {runtime} is not profiled per layer (no per-layer timer for eager torch or "
                       f"OpenVINO here: ONNX Runtime's profiler serves ort-*, a Relax VM call timer serves tvm-*)")
            continue
        print_per_layer(runtime, out[runtime])
    return out


@cli.command("rpc-server")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=9090, show_default=True)
@click.option("--tracker", default=None, metavar="HOST:PORT", help="Register with this tracker.")
@click.option("--key", default="st-deploy", show_default=True, help="Device key to register under.")
def rpc_server(host: str, port: int, tracker: str | None, key: str) -> None:
    """Board side: TVM's RPC server for remote benchmarks, reporting what the board is (st_deploy/board/server.py)."""
    from .bench.rpc import run_server
    sys.exit(run_server(host, port, tracker, key))


@cli.command("board")
@click.option("--emulate", type=click.Choice(["aarch64"]), required=True,
              help="Architecture of the emulated board (qemu-user, no privileges needed).")
@click.option("--rootfs", type=click.Path(path_type=Path), default=None,
              help="The board's root filesystem (default: built on first use, cached under "
                   "~/.cache/st-deploy/boards/).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the board's RPC server listens on.")
@click.option("--port", default=9090, show_default=True, help="Port of the board's RPC server.")
@click.option("--tracker", default=None, metavar="HOST:PORT", help="Register with this TVM RPC tracker.")
@click.option("--key", default=None, help="Device key to register under (with --tracker).")
@click.option("--build-only", is_flag=True, help="Build (or find) the root filesystem, print its path, exit.")
def board_cmd(emulate: str, rootfs: Path | None, host: str, port: int, tracker: str | None, key: str | None,
              build_only: bool) -> None:
    """An emulated board running TVM's RPC server, to test ARM artifacts without the hardware;
    stops with its children on Ctrl-C or SIGTERM. Its times are the emulator's, not the board's."""
    from .board.emulate import run_board
    from .board.rootfs import check_rootfs, ensure_rootfs
    if tracker and not key:
        raise DeployError("--tracker needs --key (the device key clients request)")
    if key and not tracker:
        raise DeployError("--key needs --tracker")
    root = rootfs if rootfs is not None else ensure_rootfs(emulate, log=click.echo)
    check_rootfs(root)
    if build_only:
        click.echo(str(root))
        return
    sys.exit(run_board(root, host, port, tracker, key, echo=click.echo))


@cli.command("serve")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Model name in the URLs (default: the ticket's name).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on; 0 picks a free one.")
@click.option("--runtime", default=None, help="ort-sparse (ONNX default), ort-dense, or tvm (TVM artifacts).")
@click.option("--threads", default=1, show_default=True, help="Runtime threads of each instance.")
@click.option("--instances", default=1, show_default=True, help="Inferences run at once (one queue).")
@click.option("--max-batch", type=int, default=None,
              help="Largest merged batch where the artifact's batch is dynamic (ONNX; default 8, 1: off).")
@click.option("--max-delay-ms", default=0.0, show_default=True,
              help="How long an instance waits for more requests to merge (0: only those already queued).")
@click.option("--max-body-bytes", default=64 << 20, show_default=True,
              help="Larger request bodies are refused (400) before they are read.")
@click.option("--max-queue", default=256, show_default=True, help="Requests waiting beyond this get 503.")
@click.option("--verbose", is_flag=True, help="Log every HTTP request on stderr.")
@click.option("--ray", "use_ray", is_flag=True, help="Run the same app as a Ray Serve deployment (ray[serve]).")
@click.option("--ray-address", default=None, metavar="ADDR", help="Join this Ray cluster (default: start a local Ray).")
@click.option("--replicas", default=1, show_default=True, help="Ray Serve replicas (with --ray).")
def serve_cmd(artifact: Path, name: str | None, host: str, port: int, runtime: str | None, threads: int,
              instances: int, max_batch: int | None, max_delay_ms: float, max_body_bytes: int, max_queue: int,
              verbose: bool, use_ray: bool, ray_address: str | None, replicas: int) -> None:
    """Serve an artifact folder over HTTP with the Open Inference Protocol v2 (KServe v2 / Triton
    HTTP; tritonclient.http works with its defaults) until Ctrl-C or SIGTERM."""
    options = dict(name=name, host=host, port=port, runtime=runtime, threads=threads, instances=instances,
                   max_batch=max_batch, max_delay_ms=max_delay_ms, max_body_bytes=max_body_bytes, max_queue=max_queue)
    if not use_ray and (ray_address or replicas != 1):
        raise DeployError("--ray-address and --replicas need --ray")
    if use_ray:
        from .serve.ray_app import RayServer
        server = RayServer(artifact, replicas=replicas, ray_address=ray_address, **options)
        click.echo(f"serving {server.name!r} on Ray Serve ({replicas} replica(s)) at {server.url}/v2/models/"
                   f"{server.name}")
    else:
        from .serve import serve
        server = serve(artifact, verbose=verbose, **options)
        model = next(iter(server.models.values()))
        click.echo(f"serving {model.name!r} ({model.runtime}, {instances} instance(s), max batch {model.max_batch}) "
                   f"at {server.url}/v2/models/{model.name}; metrics at {server.url}/metrics")
    server.wait()
