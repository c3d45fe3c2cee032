"""Read SuperTickets checkpoints: X.state_dict + X.yml (+ X.json, X.checkpoint.json).

See ../shared/samples/supertickets/FORMAT.md. The per-block architecture of a searched
net is read off the state_dict shapes; X.checkpoint.json, when present, must agree.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import DeployError
from ..models.supertickets import ACTIVATIONS, HighResolutionNet, supernet_arch
from ..ticket import DATASET_INPUT_SHAPES, SEGMENTATION_DATASETS, Ticket
from .checks import as_state_dict, load_checked, read_tensors_only, sha256_of

SIBLING_SUFFIXES = (".state_dict", ".yml", ".json", ".checkpoint.json", ".pt", ".io.pt")

DEFAULTS: dict[str, Any] = {
    "active_fn": "nn.ReLU6", "num_classes": 1000, "input_stride": 4, "bn_momentum": 0.1,
    "bn_epsilon": 1e-5, "last_channel": 1024, "head_channels": None, "expand_ratio": 4,
    "kernel_sizes": [3, 5, 7], "task": "classification", "fcn_head_for_seg": False,
}


def checkpoint_base(path: Path) -> Path:
    """X for any of X.state_dict, X.yml, X.pt, ... (X itself when given bare)."""
    name = path.name
    for suffix in sorted(SIBLING_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path


def looks_like_supertickets(path: Path) -> bool:
    base = checkpoint_base(path)
    return base.with_name(base.name + ".yml").is_file()


def _is_int_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in v)


def read_kwparams(yml: Path) -> dict[str, Any]:
    """model_kwparams from X.yml as written: a Python repr, parsed without evaluating code."""
    if not yml.is_file():
        raise DeployError(f"{yml}: missing (a SuperTickets checkpoint needs X.yml, the model_kwparams "
                          f"repr, next to X.state_dict)")
    try:
        text = yml.read_text()
    except UnicodeDecodeError:
        raise DeployError(f"{yml}: not a text file") from None
    try:
        params = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise DeployError(f"{yml}: not a Python dict literal ({type(e).__name__})") from None
    if not isinstance(params, dict):
        raise DeployError(f"{yml}: expected a dict of model_kwparams, found {type(params).__name__}")
    return params


def with_defaults(raw: dict[str, Any], where: Path) -> dict[str, Any]:
    """SuperTickets' defaults filled in, then checked."""
    params = {**DEFAULTS, **raw}
    for key in ("head_channels",):
        if params.get(key) == "None":  # SuperTickets writes None as a string in some configs
            params[key] = None
    validate_kwparams(params, where)
    return params


def parse_kwparams(yml: Path) -> dict[str, Any]:
    """model_kwparams from X.yml with SuperTickets' defaults, checked."""
    return with_defaults(read_kwparams(yml), yml)


def task_and_shape(raw: dict[str, Any], params: dict[str, Any],
                   where: Path) -> tuple[str, tuple[int, ...], dict[str, str]]:
    """(task, default input shape, {"task_from": ..., "input_shape_from": ...}).

    SuperTickets' model kwargs know only 'classification' and 'segmentation': its keypoint (COCO
    pose) configs build the segmentation net and set initial_for_heatmap, the head emitting one
    heatmap per joint. Nothing in a checkpoint names the dataset either; a segmentation head's
    class count does (SEGMENTATION_DATASETS).
    """
    n = params["num_classes"]
    if params["task"] == "segmentation" and params.get("initial_for_heatmap") is True:
        task = "keypoints"
        task_from = (f"{where.name}: task 'segmentation' with initial_for_heatmap True, as SuperTickets' "
                     f"keypoint configs say ({n} heatmap channels)")
    elif "task" in raw:
        task, task_from = params["task"], f"{where.name}: task {params['task']!r}"
    else:
        task, task_from = params["task"], f"{where.name} names no task; SuperTickets' default is 'classification'"

    if task == "classification":
        dataset, why = "ImageNet", "the classification default"
    elif task == "keypoints":
        dataset, why = "COCO keypoints", "the keypoints default"
    elif n in SEGMENTATION_DATASETS:
        dataset, why = SEGMENTATION_DATASETS[n], f"{where.name}: num_classes {n}"
    else:
        dataset = "Cityscapes"
        known = " or ".join(f"{v} {k}" for k, v in SEGMENTATION_DATASETS.items())
        why = f"num_classes {n} names no dataset known here, {known}; the segmentation default"
    shape = DATASET_INPUT_SHAPES[dataset]
    shape_from = f"the usual {dataset} input {shape[2]}x{shape[3]} ({why})"
    return task, shape, {"task_from": task_from, "input_shape_from": shape_from}


def validate_kwparams(p: dict[str, Any], where: Path) -> None:
    def bad(key: str, want: str) -> DeployError:
        return DeployError(f"{where}: {key!r} must be {want}, found {p.get(key)!r:.80}")

    if p["active_fn"] not in ACTIVATIONS:
        raise DeployError(f"{where}: active_fn {p['active_fn']!r} is not one of {sorted(ACTIVATIONS)}")
    if p["task"] not in ("classification", "segmentation"):
        raise bad("task", "'classification' or 'segmentation'")
    if not isinstance(p.get("initial_for_heatmap", False), bool):
        raise bad("initial_for_heatmap", "True or False")
    for key in ("num_classes", "last_channel", "input_stride"):
        if not isinstance(p[key], int) or isinstance(p[key], bool) or not 0 < p[key] <= 1 << 16:
            raise bad(key, "a positive int")
    if not _is_int_list(p.get("input_channel")) or len(p["input_channel"]) != 2 or min(p["input_channel"]) <= 0:
        raise bad("input_channel", "a list of two positive ints")
    if not _is_int_list(p["kernel_sizes"]) or not p["kernel_sizes"] or any(k % 2 == 0 or k <= 0 for k in p["kernel_sizes"]):
        raise bad("kernel_sizes", "a list of odd positive ints")
    if not isinstance(p["expand_ratio"], (int, float)) or isinstance(p["expand_ratio"], bool) or p["expand_ratio"] <= 0:
        raise bad("expand_ratio", "a positive number")
    for key in ("bn_epsilon", "bn_momentum"):
        if not isinstance(p[key], (int, float)) or isinstance(p[key], bool) or not p[key] > 0:
            raise bad(key, "a positive number")
    setting = p.get("inverted_residual_setting")
    if not isinstance(setting, list) or not setting:
        raise bad("inverted_residual_setting", "a non-empty list of [n_branches, [blocks], [channels]]")
    for s, stage in enumerate(setting):
        ok = (isinstance(stage, list) and len(stage) == 3 and isinstance(stage[0], int)
              and _is_int_list(stage[1]) and _is_int_list(stage[2])
              and stage[0] == len(stage[1]) == len(stage[2]) and stage[0] > 0
              and min(stage[1]) >= 0 and min(stage[2]) > 0)
        if not ok:
            raise DeployError(f"{where}: inverted_residual_setting stage {s} {stage!r:.80} is not "
                              f"[n_branches, [n_blocks]*n_branches, [channels]*n_branches]")
        if s and stage[0] < setting[s - 1][0]:
            raise DeployError(f"{where}: stage {s} has fewer branches than stage {s - 1}")
    head = p.get("head_channels")
    if p["task"] == "classification" and head is not None:
        if not _is_int_list(head) or len(head) != setting[-1][0]:
            raise bad("head_channels", f"None or a list of {setting[-1][0]} ints")


def arch_from_state_dict(sd: dict[str, torch.Tensor], params: dict, where: Path):
    """The block-architecture callback reading kernel sizes and hidden widths off the weights."""
    dw_index = 1 if params["expand_ratio"] != 1 else 0
    pattern = re.compile(r"^(.*)\.ops\.(\d+)\.")
    branches: dict[str, set[int]] = {}
    for key in sd:
        m = pattern.match(key)
        if m:
            branches.setdefault(m.group(1), set()).add(int(m.group(2)))

    def arch(prefix: str, inp: int, oup: int) -> tuple[list[int], list[int]]:
        found = sorted(branches.get(prefix, ()))
        if found != list(range(len(found))):
            raise DeployError(f"{where}: block {prefix!r} has branches {found}, expected 0..n-1")
        ks, hs = [], []
        for b in found:
            key = f"{prefix}.ops.{b}.{dw_index}.0.weight"
            w = sd.get(key)
            if w is None:
                raise DeployError(f"{where}: key {key!r} (the depthwise conv of branch {b}) is missing")
            if w.dim() != 4 or w.shape[1] != 1 or w.shape[2] != w.shape[3] or w.shape[2] % 2 == 0 or w.shape[0] == 0:
                raise DeployError(f"{where}: {key!r} has shape {tuple(w.shape)}, not a depthwise "
                                  f"(hidden, 1, k, k) kernel with odd k")
            ks.append(int(w.shape[2]))
            hs.append(int(w.shape[0]))
        if params["expand_ratio"] == 1 and any(h != inp for h in hs):
            raise DeployError(f"{where}: block {prefix!r} without expansion must have hidden == {inp}")
        return ks, hs

    return arch


def read_checkpoint_json(path: Path) -> list | None:
    if not path.is_file():
        return None
    try:
        blocks = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DeployError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(blocks, list) or not all(isinstance(b, list) and len(b) >= 5 for b in blocks):
        raise DeployError(f"{path}: expected a list of per-block entries "
                          f"[out_dim, 1, stride, kernel_sizes, hidden_channels, ...]")
    return blocks


def build_supertickets(params: dict, blocks: dict[str, list] | None, sd: dict[str, torch.Tensor] | None,
                       where: Path) -> HighResolutionNet:
    """Build the module from kwparams plus either an explicit block table or a state_dict."""
    if blocks is not None:
        def arch(prefix: str, inp: int, oup: int):
            if prefix not in blocks:
                raise DeployError(f"{where}: no architecture recorded for block {prefix!r}")
            ks, hs = blocks[prefix]
            return list(ks), list(hs)
    elif sd is not None:
        arch = arch_from_state_dict(sd, params, where)
    else:
        arch = supernet_arch(params)
    try:
        return HighResolutionNet(params, arch)
    except DeployError:
        raise
    except (ValueError, RuntimeError, TypeError, IndexError, ZeroDivisionError) as e:
        raise DeployError(f"{where}: the configuration does not describe a buildable network ({e})") from None


def block_table(model: HighResolutionNet) -> dict[str, list]:
    """{prefix: [kernel_sizes, hiddens]} in construction order."""
    mods = dict(model.named_modules())
    return {name: [mods[name].kernel_sizes, mods[name].hiddens] for name in model.block_names}


def load_supertickets(path: Path) -> Ticket:
    base = checkpoint_base(path)
    sd_path = base.with_name(base.name + ".state_dict")
    yml_path = base.with_name(base.name + ".yml")
    if path.name.endswith(".pt") and not path.name.endswith(".io.pt") and not sd_path.is_file():
        raise DeployError(
            f"{path}: a pickled whole model is never unpickled (it can run arbitrary code); "
            f"put {sd_path.name} (torch.save(model.state_dict())) and {yml_path.name} "
            f"(repr of model_kwparams) next to it")
    if not sd_path.is_file():
        raise DeployError(f"{sd_path}: missing (a SuperTickets checkpoint is X.state_dict + X.yml)")
    raw = read_kwparams(yml_path)
    params = with_defaults(raw, yml_path)
    task, shape, provenance = task_and_shape(raw, params, yml_path)
    sd = as_state_dict(read_tensors_only(sd_path), sd_path)
    model = build_supertickets(params, None, sd, sd_path)
    table = block_table(model)

    ckpt_path = base.with_name(base.name + ".checkpoint.json")
    ckpt = read_checkpoint_json(ckpt_path)
    if ckpt is not None:
        if len(ckpt) != len(table):
            raise DeployError(f"{ckpt_path}: lists {len(ckpt)} blocks, the state_dict holds {len(table)}")
        for n, (prefix, (ks, hs)) in enumerate(table.items()):
            if list(ckpt[n][3]) != ks or list(ckpt[n][4]) != hs:
                raise DeployError(
                    f"{ckpt_path}: block {n} ({prefix}) says kernels {ckpt[n][3]} hidden {ckpt[n][4]}, "
                    f"the state_dict has kernels {ks} hidden {hs}")

    load_checked(model, sd, sd_path)
    supernet = supernet_arch(params)
    mods = dict(model.named_modules())
    is_supernet = all(
        table[p] == list(supernet(p, mods[p].inp, mods[p].oup)) for p in table)
    # task_from / input_shape_from travel in the config, so a packed ticket still says what they were read from
    config = {"model_kwparams": params, "blocks": table,
              "variant": "supernet" if is_supernet else "searched", **provenance}
    return Ticket(
        module=model, family="supertickets", config=config, task=task,
        default_input_shape=shape, source=str(sd_path),
        sha256=sha256_of(sd_path), name=base.name,
    )
