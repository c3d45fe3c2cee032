"""Hostile tickets: every mutated input ends in a one-line DeployError or a correct load.

Categories: truncated files, bit flips, yml mutations, state_dict mutations (dtypes, shapes,
NaN/Inf, mask values, missing/extra keys), inconsistent checkpoint.json, pickles carrying
objects, tampered packed tickets. ST_DEPLOY_FUZZ_CASES sets the cases per category.
"""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch

from st_deploy import load_ticket, save_ticket
from tests.conftest import needs_samples, sample_io
from tests.fuzz.harness import CASES, Tally, WrongResult

pytestmark = needs_samples
NAME = "cls_mini_searched"


@pytest.fixture()
def trio(samples, tmp_path) -> Path:
    for suffix in (".state_dict", ".yml", ".json", ".checkpoint.json"):
        shutil.copy(samples / f"{NAME}{suffix}", tmp_path / f"{NAME}{suffix}")
    return tmp_path / f"{NAME}.state_dict"


@pytest.fixture(scope="module")
def ref_io(samples) -> dict:
    return sample_io(samples, NAME)


def load_and_run(path: Path, ref_io: dict, changed: Callable[[], bool] | None = None) -> str:
    """Load `path` and run it on the sample's input: "ok" when it reproduces the sample's output.

    A load whose output differs is "ok-changed" only where `changed()` shows, independently of
    the loader, that the input's content really differs (a flipped bit inside a weight, a yml
    that parses to other settings): nothing can tell those from a genuine ticket. Any other
    differing output is wrong."""
    ticket = load_ticket(path)
    with torch.no_grad():
        y = ticket.module(ref_io["x"])
    ref = ref_io["y"]
    if tuple(y.shape) == tuple(ref.shape) and (y - ref).abs().max() <= 1e-5 * ref.abs().max():
        return "ok"
    if changed is not None and changed():
        return "ok-changed"
    diff = (y - ref).abs().max().item() if tuple(y.shape) == tuple(ref.shape) else None
    raise WrongResult(f"output {tuple(y.shape)} differs from the sample's {tuple(ref.shape)} "
                      f"(max abs diff {diff}) though the input's content is the original's")


def _tensors_differ(path: Path, original: dict) -> Callable[[], bool]:
    """Whether the file, read with plain torch.load, holds other tensors than `original`."""
    def check() -> bool:
        try:
            now = torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - unreadable to torch: certainly not the original content
            return True
        return _differs(now, original)
    return check


def _differs(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() != b.keys() or any(_differs(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) != len(b) or any(_differs(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b)
    return type(a) is not type(b) or a != b


def _report(tally: Tally, changed_allowed: tuple[str, ...] = ()) -> None:
    print("\nfuzz:", tally.summary())
    assert not tally.failures, "\n".join(tally.failures[:5])
    for category, n in tally.counts.items():
        if category not in changed_allowed:
            assert n["ok-changed"] == 0, category


def test_truncated_and_bitflipped_state_dict(trio, ref_io):
    rng = random.Random(0)
    original = trio.read_bytes()
    tensors = torch.load(trio, weights_only=True)
    tally = Tally()
    for _ in range(CASES):
        trio.write_bytes(original[: rng.randrange(0, len(original))])
        tally.run("truncated", lambda: load_and_run(trio, ref_io))
    for _ in range(CASES):
        data = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
        trio.write_bytes(bytes(data))
        tally.run("bitflip", lambda: load_and_run(trio, ref_io, _tensors_differ(trio, tensors)))
    _report(tally, changed_allowed=("bitflip",))


YML_MUTATIONS = [
    lambda d: [1, 2], lambda d: "text", lambda d: None,
    lambda d: {**d, "inverted_residual_setting": "x"},
    lambda d: {**d, "inverted_residual_setting": [[2, [1], [8]]]},
    lambda d: {**d, "inverted_residual_setting": [[1, [1], [-8]]]},
    lambda d: {**d, "inverted_residual_setting": [[1, [10 ** 9], [8]]]},
    lambda d: {**d, "input_channel": [8]}, lambda d: {**d, "input_channel": "8"},
    lambda d: {**d, "kernel_sizes": [2, 4]}, lambda d: {**d, "kernel_sizes": []},
    lambda d: {**d, "expand_ratio": 0}, lambda d: {**d, "expand_ratio": "4"},
    lambda d: {**d, "active_fn": "os.system"}, lambda d: {**d, "task": "detection"},
    lambda d: {**d, "num_classes": 0}, lambda d: {**d, "num_classes": True},
    lambda d: {**d, "head_channels": [8]}, lambda d: {**d, "bn_epsilon": -1.0},
    lambda d: {**d, "last_channel": 1 << 40}, lambda d: {**d, "input_stride": 1},
    lambda d: {k: v for k, v in d.items() if k != "inverted_residual_setting"},
]


def test_yml_mutations(trio, ref_io):
    import ast
    yml = trio.with_name(f"{NAME}.yml")
    params = ast.literal_eval(yml.read_text())
    rng = random.Random(1)
    tally = Tally()

    def settings_differ() -> bool:
        try:
            return ast.literal_eval(yml.read_text()) != params
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return False  # unparsable: the loader had no settings to compute anything else from

    for mutate in YML_MUTATIONS:
        yml.write_text(repr(mutate(dict(params))))
        tally.run("yml-structured", lambda: load_and_run(trio, ref_io, settings_differ))
    text = repr(params)
    for _ in range(CASES):
        chars = list(text)
        for _ in range(rng.randint(1, 5)):
            chars[rng.randrange(len(chars))] = rng.choice("[]{}:,'0123456789-abc ")
        yml.write_text("".join(chars))
        tally.run("yml-random", lambda: load_and_run(trio, ref_io, settings_differ))
    yml.write_bytes(b"\xff\xfe\x00garbage")
    tally.run("yml-binary", lambda: load_and_run(trio, ref_io))
    _report(tally, changed_allowed=("yml-structured", "yml-random"))


def _mutations(sd: dict, rng: random.Random):
    keys = sorted(sd)
    k = rng.choice(keys)
    v = sd[k]
    choice = rng.randrange(9)
    if choice == 0:
        sd[k] = v.to(torch.float64) if v.is_floating_point() else v.float()
    elif choice == 1:
        sd[k] = torch.zeros(*[s + 1 for s in v.shape]) if v.dim() else torch.zeros(2)
    elif choice == 2 and v.is_floating_point() and v.numel():
        sd[k] = v.clone().flatten()
        sd[k][rng.randrange(v.numel())] = rng.choice([float("nan"), float("inf"), -float("inf")])
        sd[k] = sd[k].view(v.shape)
    elif choice == 3:
        mk = rng.choice([x for x in keys if x.endswith("_mask")])
        sd[mk] = sd[mk] * rng.choice([2.0, -1.0, 0.5])
    elif choice == 4:
        del sd[k]
    elif choice == 5:
        sd[k + "_extra"] = v
    elif choice == 6:
        sd[k] = v.to(torch.int32) if v.is_floating_point() else v
    elif choice == 7:
        sd[k] = v.to(torch.complex64) if v.is_floating_point() else v
    else:
        sd[k] = torch.empty(0)
    return sd


def test_state_dict_mutations(trio, ref_io):
    original = torch.load(trio, weights_only=True)
    rng = random.Random(2)
    tally = Tally()
    for _ in range(CASES * 2):
        sd = _mutations({k: v.clone() for k, v in original.items()}, rng)
        torch.save(sd, trio)
        tally.run("state_dict", lambda: load_and_run(trio, ref_io))
    for payload in ([1, 2, 3], "string", {1: torch.zeros(1)}, {"a": [torch.zeros(1)]}, torch.zeros(3)):
        torch.save(payload, trio)
        tally.run("state_dict-not-a-dict", lambda: load_and_run(trio, ref_io))
    _report(tally)


def test_inconsistent_checkpoint_json(trio, ref_io):
    ckpt_path = trio.with_name(f"{NAME}.checkpoint.json")
    blocks = json.loads(ckpt_path.read_text())
    rng = random.Random(3)
    tally = Tally()
    for _ in range(CASES):
        b = json.loads(json.dumps(blocks))
        i = rng.randrange(len(b))
        what = rng.randrange(5)
        if what == 0:
            b[i][4] = [h + 1 for h in b[i][4]] or [1]
        elif what == 1:
            b[i][3] = list(reversed(b[i][3])) + [9]
        elif what == 2:
            b.pop(i)
        elif what == 3:
            b[i] = "not a block"
        else:
            b = {"a": 1}
        ckpt_path.write_text(json.dumps(b))
        tally.run("checkpoint-json", lambda: load_and_run(trio, ref_io))
    ckpt_path.write_text("{not json")
    tally.run("checkpoint-json", lambda: load_and_run(trio, ref_io))
    _report(tally)
    assert tally.counts["checkpoint-json"]["ok"] == 0  # every inconsistency is caught


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_pickles_carrying_objects_never_run(trio, tmp_path, ref_io):
    marker = tmp_path / "code-ran"
    tally = Tally()
    payloads = [_Evil(marker), {"x": _Evil(marker)}, [torch.zeros(1), _Evil(marker)],
                {"format": "st-deploy-ticket", "config": _Evil(marker)}]
    for p in payloads:
        torch.save(p, trio)
        tally.run("pickle-objects", lambda: load_and_run(trio, ref_io))
        buf = io.BytesIO()
        import pickle
        pickle.dump(p, buf)
        trio.write_bytes(buf.getvalue())
        tally.run("pickle-objects", lambda: load_and_run(trio, ref_io))
    _report(tally)
    assert not marker.exists(), "unpickling ran code"
    assert tally.counts["pickle-objects"]["ok"] == 0


def test_tampered_packed_ticket(trio, tmp_path, ref_io):
    packed = save_ticket(load_ticket(trio), tmp_path / "ticket.pt")
    original = torch.load(packed, weights_only=True)
    rng = random.Random(4)
    tally = Tally()
    edits = [
        lambda o: o.update(format_version=99), lambda o: o.update(family="alien"),
        lambda o: o.update(input_shape=[1, 3, -1, 2]), lambda o: o.update(input_shape="big"),
        lambda o: o.pop("state_dict"), lambda o: o.update(state_dict=[1]),
        lambda o: o["config"].update(blocks={}), lambda o: o["config"].update(model_kwparams=[]),
        lambda o: o["config"]["blocks"].update({next(iter(o["config"]["blocks"])): [[3], [999]]}),
        lambda o: o.update(config="x"), lambda o: o.update(task=None),
    ]
    for edit in edits:
        o = _copy(original)
        edit(o)
        target = tmp_path / "tampered.pt"
        torch.save(o, target)
        tally.run("packed-ticket", lambda: load_and_run(target, ref_io))
    data = packed.read_bytes()
    for _ in range(CASES):
        cut = bytearray(data[: rng.randrange(len(data))] if rng.random() < 0.5 else data)
        for _ in range(rng.randint(0, 6)):
            if cut:
                cut[rng.randrange(len(cut))] ^= 1 << rng.randrange(8)
        corrupt = tmp_path / "corrupt.pt"
        corrupt.write_bytes(bytes(cut))
        tally.run("packed-bytes", lambda: load_and_run(corrupt, ref_io, _tensors_differ(corrupt, original)))
    _report(tally, changed_allowed=("packed-bytes",))


def _copy(o):
    if isinstance(o, dict):
        return {k: _copy(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_copy(v) for v in o]
    if isinstance(o, torch.Tensor):
        return o.clone()
    return o
