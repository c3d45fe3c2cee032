"""The public Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .loaders import load_ticket as _load_path, save_ticket
from .loaders.module import ticket_from_module
from .ticket import Ticket

__all__ = ["load_ticket", "save_ticket", "pack", "inspect", "make_example", "compact", "export"]


def load_ticket(source: str | Path | nn.Module, **kwargs: Any) -> Ticket:
    """A Ticket from a file (see st_deploy.loaders.load_ticket) or from a pruned nn.Module in memory
    (masks from torch.nn.utils.prune or weight_mask buffers; input_shape=(N, C, H, W) or
    example_input=tensor, task=...)."""
    if isinstance(source, nn.Module):
        keys = ("input_shape", "example_input", "task", "name")
        return ticket_from_module(source, **{k: v for k, v in kwargs.items() if k in keys})
    kwargs.pop("example_input", None)
    return _load_path(source, **kwargs)


def _as_ticket(ticket: Ticket | str | Path | nn.Module, **load_kwargs: Any) -> Ticket:
    return ticket if isinstance(ticket, Ticket) else load_ticket(ticket, **load_kwargs)


def pack(ticket: Ticket | str | Path, out: str | Path, force: bool = False, **load_kwargs: Any) -> Path:
    """Write a single-file ticket.pt (config + state_dict + format version) from any ticket."""
    return save_ticket(_as_ticket(ticket, **load_kwargs), out, force=force)


def inspect(ticket: Ticket | str | Path, threshold: float = 0.0,
            input_shape: tuple[int, ...] | None = None, **load_kwargs: Any) -> dict[str, Any]:
    """Per-layer table and totals (params, sparsity, unselected channels, FLOPs)."""
    from .inspect import inspect_ticket
    return inspect_ticket(_as_ticket(ticket, **load_kwargs), threshold, input_shape)


def make_example(out: str | Path, seed: int = 0, sparsity: float = 0.9, force: bool = False) -> Path:
    """Write the built-in example ticket (SuperTickets format); returns its X.state_dict path."""
    from .example import make_example as _make
    return _make(out, seed=seed, sparsity=sparsity, force=force)


def compact(ticket: Ticket | str | Path | nn.Module, threshold: float = 0.0, seed: int = 0, **load_kwargs: Any):
    """Exact compaction (see st_deploy.compact): returns Compacted(ticket, graph, report)."""
    from .compact import compact as _compact
    return _compact(_as_ticket(ticket, **load_kwargs), threshold=threshold, seed=seed)


def export(ticket: Ticket | str | Path | nn.Module, target: str = "onnx", out: str | Path | None = None,
           input_shape: tuple[int, ...] | None = None, format: str = "auto", tolerance: float = 1e-4,
           force: bool = False, **kwargs: Any) -> Path:
    """Export a ticket (or a path to one) for `target` into the artifact folder `out`."""
    from .export import export as _export
    load_keys = {k: kwargs.pop(k) for k in ("model", "model_kwargs", "task", "example_input") if k in kwargs}
    if isinstance(ticket, nn.Module):
        load_keys["input_shape"] = input_shape
    return _export(_as_ticket(ticket, **load_keys), target=target, out=out, input_shape=input_shape,
                   format=format, tolerance=tolerance, force=force, **kwargs)
