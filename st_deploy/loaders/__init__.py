"""load: any supported checkpoint -> Ticket. Only this stage reads checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DeployError
from ..ticket import Ticket
from .checks import read_tensors_only
from .masked import load_masked
from .packed import is_packed, load_packed, save_ticket
from .supertickets import checkpoint_base, load_supertickets, looks_like_supertickets

__all__ = ["load_ticket", "save_ticket"]


def load_ticket(path: str | Path, model: str | None = None, model_kwargs: dict[str, Any] | None = None,
                task: str = "classification", input_shape: tuple[int, ...] | None = None) -> Ticket:
    """Read a ticket: a SuperTickets checkpoint (X.state_dict + X.yml [+ X.checkpoint.json]),
    our packed ticket.pt / compact.pt, or a masked state_dict of the model built by `model`
    ('package.module:factory', with `model_kwargs`)."""
    path = Path(path)
    if path.is_dir():
        raise DeployError(f"{path}: is a folder; give a ticket file (X.state_dict, ticket.pt, ...)")
    if model is None and looks_like_supertickets(path):
        return load_supertickets(path)
    if not path.exists():
        base = checkpoint_base(path)
        hint = ""
        if path.suffix in (".state_dict", ".yml"):
            hint = f" (a SuperTickets checkpoint is {base.name}.state_dict + {base.name}.yml)"
        raise DeployError(f"{path}: file not found{hint}")
    obj = read_tensors_only(path)
    if is_packed(obj):
        return load_packed(obj, path, model=model)
    if model is not None:
        return load_masked(path, model, model_kwargs, task=task, input_shape=input_shape)
    if path.name.endswith(".state_dict"):
        yml = checkpoint_base(path).name + ".yml"
        raise DeployError(f"{path}: {yml} is missing next to it; a SuperTickets checkpoint needs it, "
                          f"and a generic masked state_dict needs --model package.module:factory")
    raise DeployError(f"{path}: a plain state_dict: name the model that reads it with "
                      f"--model package.module:factory (e.g. st_deploy.models.zoo:resnet18_like)")
