"""Our single-file ticket format: ticket.pt, loadable with torch.load(weights_only=True).

{"format": "st-deploy-ticket", "format_version": 1, "family": ..., "name": ..., "task": ...,
 "input_shape": [N, C, H, W], "source_sha256": ..., "config": {...},
 "state_dict": {...}  (supertickets, masked)  |  "graph": {...}  (compact)}
Only plain containers, numbers, strings and tensors: nothing in it can run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import DeployError
from ..graph.ir import Graph
from ..graph.module import GraphModule
from ..ticket import Ticket
from ..io.atomic import atomic_path
from .checks import as_state_dict, load_checked, read_tensors_only, sha256_of

FORMAT = "st-deploy-ticket"
FORMAT_VERSION = 1
FAMILIES = ("supertickets", "masked", "compact")


def is_packed(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def to_payload(ticket: Ticket) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "family": ticket.family,
        "name": ticket.name, "task": ticket.task, "input_shape": list(ticket.default_input_shape),
        "source_sha256": ticket.sha256,
    }
    if ticket.family == "compact":
        payload["graph"] = ticket.module.to_graph().to_dict()
        payload["config"] = {k: v for k, v in ticket.config.items() if k != "graph"}
    else:
        payload["config"] = ticket.config
        payload["state_dict"] = {k: v.detach().clone() for k, v in ticket.module.state_dict().items()}
    return payload


def save_ticket(ticket: Ticket, path: str | Path, force: bool = False) -> Path:
    """Write ticket.pt atomically: a crash leaves either the old file or the new one."""
    path = Path(path)
    if path.exists() and not force:
        raise DeployError(f"{path}: exists (pass --force to overwrite)")
    with atomic_path(path) as tmp:
        try:
            torch.save(to_payload(ticket), tmp)
        except RuntimeError as e:  # torch's zip writer reports a failed write (full disk, ...) so
            raise OSError(f"torch.save: {str(e).strip().splitlines()[-1]}") from None
    return path


def _require(d: dict, key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if key not in d or not isinstance(d[key], kind):
        raise DeployError(f"{path}: packed ticket field {key!r} is missing or not a {kind}")
    return d[key]


def load_packed(obj: dict[str, Any], path: Path, model: str | None = None) -> Ticket:
    from .masked import attach_masks, build_module, factory_kwargs_ok, split_masks
    from .supertickets import build_supertickets, validate_kwparams

    if obj.get("format_version") != FORMAT_VERSION:
        raise DeployError(f"{path}: ticket format_version {obj.get('format_version')!r} is not supported "
                          f"(this st-deploy reads {FORMAT_VERSION})")
    family = _require(obj, "family", str, path)
    if family not in FAMILIES:
        raise DeployError(f"{path}: unknown ticket family {family!r}")
    task = _require(obj, "task", str, path)
    shape = _require(obj, "input_shape", (list, tuple), path)
    if len(shape) != 4 or not all(isinstance(s, int) and 0 < s <= 1 << 15 for s in shape):
        raise DeployError(f"{path}: input_shape {shape!r:.60} is not four positive ints")
    config = _require(obj, "config", dict, path)
    common = dict(family=family, task=task, default_input_shape=tuple(shape), source=str(path),
                  sha256=str(obj.get("source_sha256") or sha256_of(path)), name=str(obj.get("name", path.stem)))

    if family == "compact":
        graph = Graph.from_dict(_require(obj, "graph", dict, path))
        return Ticket(module=GraphModule(graph), config=config, **common)

    sd = as_state_dict(_require(obj, "state_dict", dict, path), path)
    if family == "supertickets":
        params = _require(config, "model_kwparams", dict, path)
        validate_kwparams(params, path)
        blocks = _require(config, "blocks", dict, path)
        module = build_supertickets(params, blocks, None, path)
        load_checked(module, sd, path)
        return Ticket(module=module, config=config, **common)

    spec = model or _require(config, "model", str, path)
    if model is None and not factory_kwargs_ok(spec):
        raise DeployError(f"{path}: the ticket names model factory {spec!r}; importing it runs its code, "
                          f"so pass it explicitly with --model {spec}")
    kwargs = config.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise DeployError(f"{path}: config.kwargs must be a dict")
    module = build_module(spec, kwargs)
    plain, masks = split_masks(sd, module, path)
    load_checked(module, plain, path)
    attach_masks(module, masks)
    return Ticket(module=module.eval(), config={"model": spec, "kwargs": kwargs}, **common)
