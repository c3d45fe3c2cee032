"""`st-deploy tune --rpc/--tracker`: the planner's cost table measured on a board through TVM's RPC.

Which boards: a cost table is only worth its measurements. Times from an emulated board are the
emulator's, and a board that does not say what it is (a plain tvm.exec.rpc_server) cannot be told
apart from one: both are refused with the reason before anything is built or measured, as is a
board whose CPU is not the one --target builds for.

What is measured: the local tuner's shapes and sparsities (plan/tune.py; --quick a subset), each at
dense and every sparse format a TVM artifact has for its kind (graph.kinds.sparse_formats(kind,
"tvm")). Every (shape, format, sparsity) is the one-layer graph of plan/tune.py lowered by the TVM
exporter (export/tvm/relax_graph.py: the kernel call an artifact makes for that layer) into a Relax
function of its own; all functions are compiled for --target first and linked with our kernels into
a few modules (one upload each, about MODULE_BYTES of weights apiece). On the board, at one thread
(TVM's pool and the kernels'), the board's own time_evaluator times each function: rounds over a
shape's variants and a trivial function (x + 1) in turn (`number` calls per sample, so a sample lasts
SAMPLE_S), the median of the rounds less the trivial one's (the VM's per-call cost), floored at
0.5 us as plan/tune.py does. Points have plan/tune.py's schema; the table records the board's facts
(`board`), `machine` (the board's CPU model x cores, as read there), the target, threads and
`backend: "tvm"`, and is cached where the planner looks for the target's board table
(plan.cost.board_table_path).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import DeployError

TARGETS = ("llvm", "aarch64", "rasp4")
SAMPLE_S = 2e-4          # a sample runs a layer `number` times: at least this long on the board
MAX_NUMBER = 200
OVERHEAD_NUMBER = 200    # calls per sample of the trivial function
MODULE_BYTES = 32 << 20  # weights per uploaded module, roughly (the kernels add ~3 MB to each)
OVERHEAD = "overhead"


def tunable_board(facts: dict[str, Any], where: str, spec: Any) -> None:
    """Nothing if the board is real hardware whose CPU `spec` builds for, else a DeployError saying why not."""
    from ..plan.cost import board_machine, machine_id
    if facts.get("emulated") is None:
        raise DeployError(f"tune: the board at {where} does not say whether it is emulated ({facts.get('note')}); "
                          f"a cost table needs real hardware")
    if facts["emulated"]:
        raise DeployError(f"tune: the board at {where} is emulated ({'; '.join(facts.get('emulation') or [])}): "
                          f"its times are the emulator's, not an ARM core's; tune on a real board")
    if spec is None:
        return
    machine = {"arm64": "aarch64"}.get(facts.get("machine"), facts.get("machine"))
    if machine != spec.arch:
        raise DeployError(f"tune --target {spec.name}: builds {spec.arch} code, but the board at {where} is "
                          f"{machine}; give the board's target (aarch64 or rasp4 for an ARM board)")
    if spec.name == "llvm" and board_machine(facts) != machine_id():
        raise DeployError(f"tune --target llvm: llvm is this machine's CPU ({machine_id()}), but the board at {where} "
                          f"is {board_machine(facts)}; run `st-deploy tune` on that machine itself")


def _variant_funcs(specs: list[dict[str, Any]], sparsities: tuple[float, ...]) -> list[dict[str, Any]]:
    """One entry per tune shape: its points (no `us` yet), their Relax functions' names and
    functions, the input shape and a rough size of the weights they hold."""
    from ..export.tvm.relax_graph import to_relax
    from ..graph.kinds import planned
    from ..plan.tune import layer_point, variants
    shapes_out = []
    for i, spec in enumerate(specs):
        entry: dict[str, Any] = {"spec": spec, "points": [], "names": [], "funcs": [], "bytes": 0}
        for j, (fmt, sp) in enumerate(variants(spec["kind"], sparsities, backend="tvm")):
            graph, shapes, point = layer_point(spec, fmt, sp)
            name = f"s{i}_v{j}"
            func = to_relax(planned(graph, {"layer": fmt}), shapes, kernels=True).mod["main"]
            entry["names"].append(name)
            entry["funcs"].append(func.with_attr("global_symbol", name))
            entry["points"].append(point)
            entry["input"] = shapes["x"]
            w = graph.nodes[0].params["weight"]
            entry["bytes"] += 4 * w.numel() * (1.0 if fmt == "dense" else 2.0 * (1.0 - sp))
        shapes_out.append(entry)
    return shapes_out


def _trivial() -> Any:
    """x + 1 on 8 floats: a call's cost without a layer (its output allocated as a layer's is). It is
    also the module's one compiled op: a module of kernel calls alone has no code for the target's
    CPU, and TVM then packs the module's blob for this machine's (aarch64 links failed on it)."""
    from tvm import relax
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8), "float32"))
    with bb.function(OVERHEAD, [x]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.add(x, relax.const(1.0, "float32")))
        bb.emit_func_output(y)
    return bb.get()[OVERHEAD]


def _build_modules(entries: list[dict[str, Any]], spec: Any, folder: Path) -> list[tuple[Path, list[dict[str, Any]]]]:
    """model.so files for the board, each holding a few shapes' functions and the trivial function."""
    import tvm
    from ..export.tvm.build import compile_module, export
    groups: list[list[dict[str, Any]]] = [[]]
    for e in entries:
        if groups[-1] and sum(g["bytes"] for g in groups[-1]) + e["bytes"] > MODULE_BYTES:
            groups.append([])
        groups[-1].append(e)
    out = []
    for k, group in enumerate(groups):
        funcs = {name: f for e in group for name, f in zip(e["names"], e["funcs"])}
        funcs[OVERHEAD] = _trivial()
        mod = tvm.IRModule({tvm.ir.GlobalVar(n): f for n, f in funcs.items()})
        path = folder / f"tune{k}.so"
        export(compile_module(mod, spec), spec, path)
        out.append((path, group))
    return out


def _time_shape(vm: Any, dev: Any, entry: dict[str, Any], rounds: int) -> list[float]:
    """Microseconds per call of each of the shape's functions on the board, less the trivial function's."""
    import tvm
    rng = np.random.default_rng(0)
    x = tvm.runtime.tensor(rng.standard_normal(entry["input"]).astype(np.float32), dev)
    ox = tvm.runtime.tensor(np.zeros((1, 8), np.float32), dev)
    timers = []
    for name in entry["names"]:  # calibrate: a sample of `number` calls lasts SAMPLE_S
        once = min(vm.time_evaluator(name, dev, number=1, repeat=3)(x).results)
        number = max(1, min(MAX_NUMBER, math.ceil(SAMPLE_S / max(once, 1e-8))))
        timers.append((vm.time_evaluator(name, dev, number=number, repeat=1), x))
    timers.append((vm.time_evaluator(OVERHEAD, dev, number=OVERHEAD_NUMBER, repeat=1), ox))
    times = np.zeros((rounds, len(timers)))
    for r in range(rounds):  # interleaved: load on the board lands on every variant alike
        for j, (timer, arg) in enumerate(timers):
            times[r, j] = timer(arg).mean
    med = np.median(times, axis=0) * 1e6
    return [round(max(float(m - med[-1]), 0.5), 3) for m in med[:-1]]


def _summary(entry: dict[str, Any]) -> str:
    s = entry["spec"]
    pts = entry["points"]
    top = max(p["sparsity"] for p in pts)
    sparse = ", ".join(f"{p['format']} {p['us']:.1f}" for p in pts if p["format"] != "dense" and p["sparsity"] == top)
    return (f"{s['kind']} {s['cin']}->{s['cout']} k{s['k']} s{s['stride']} {s['hw']}x{s['hw']}: "
            f"dense {pts[0]['us']:.1f} us; at {top:.0%} {sparse} us")


def tune_board(target: str, rpc: str | None = None, tracker: str | None = None, key: str | None = None,
               shapes: Iterable[dict[str, Any]] | None = None, quick: bool = False, out: str | Path | None = None,
               log: Callable[[str], None] | None = None) -> Path:
    """Measure the cost table for `target` on the board at `rpc` (HOST:PORT of its `st-deploy
    rpc-server`) or reached through `tracker` under `key`; write it to `out` (default: the cache
    file export --target `target` --format auto plans with) and return its path.

    Needs a real board that reports its facts (board/server.py) with the CPU `target` builds for;
    shapes and quick as for st_deploy.plan.tune. log: a function given one line per shape measured.
    """
    from ..bench.rpc import board_facts, connect, loaded_module, pin_threads
    from ..export.tvm.targets import resolve_target
    from ..plan.cost import TABLE_VERSION, board_machine, board_table_path
    from ..plan.tune import settings, write_table
    from tvm import relax
    specs, sparsities, repeats = settings(shapes, quick)
    if target not in TARGETS:
        raise DeployError(f"tune --target {target!r} over RPC: one of {', '.join(TARGETS)} (CPU boards)")
    session = connect(rpc, tracker, key, session_timeout=0)
    facts = board_facts(session)
    where = facts.get("server") or rpc or f"{tracker} key={key}"
    tunable_board(facts, where, None)
    spec = resolve_target(target)  # after the refusals: a cross compiler is no use for an emulated board
    tunable_board(facts, where, spec)
    t0 = time.time()
    entries = _variant_funcs(specs, sparsities)
    with tempfile.TemporaryDirectory(prefix="st-tune-board-") as d:
        modules = _build_modules(entries, spec, Path(d))
        if log:
            log(f"built {sum(len(e['names']) for e in entries)} layer variants for {spec.name} in {len(modules)} "
                f"module(s) ({time.time() - t0:.1f} s); timing on {board_machine(facts)} at {where}")
        done = 0
        for path, group in modules:
            rlib = loaded_module(session, path)
            pin_threads(session, rlib, 1, kernels=True)
            dev = session.cpu()
            vm = relax.VirtualMachine(rlib, dev)
            for entry in group:
                for p, us in zip(entry["points"], _time_shape(vm, dev, entry, repeats)):
                    p["us"] = us
                done += 1
                if log:
                    log(f"{done}/{len(entries)} {_summary(entry)}")
    table = {"version": TABLE_VERSION, "target": spec.name, "machine": board_machine(facts), "threads": 1,
             "backend": "tvm", "board": facts, "tvm_target": spec.describe()["tvm"],
             "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "note": f"measured over TVM RPC with st-deploy tune{' --quick' if quick else ''}: each layer a Relax "
                     f"function timed by the board's time_evaluator, 1 thread, median of {repeats} interleaved "
                     f"rounds less a trivial function's (x + 1)",
             "points": [p for e in entries for p in e["points"]]}
    return write_table(table, Path(out) if out is not None else board_table_path(spec.name, facts))
