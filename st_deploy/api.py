"""The public Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .loaders import load_ticket, save_ticket
from .ticket import Ticket

__all__ = ["load_ticket", "save_ticket", "pack", "inspect", "make_example", "compact", "export"]


def _as_ticket(ticket: Ticket | str | Path, **load_kwargs: Any) -> Ticket:
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


def compact(ticket: Ticket | str | Path, threshold: float = 0.0, seed: int = 0, **load_kwargs: Any):
    """Exact compaction (see st_deploy.compact): returns Compacted(ticket, graph, report)."""
    from .compact import compact as _compact
    return _compact(_as_ticket(ticket, **load_kwargs), threshold=threshold, seed=seed)


def export(ticket: Ticket | str | Path, target: str = "onnx", out: str | Path | None = None,
           input_shape: tuple[int, ...] | None = None, format: str = "auto", tolerance: float = 1e-4,
           force: bool = False, **kwargs: Any) -> Path:
    """Export a ticket (or a path to one) for `target` into the artifact folder `out`."""
    from .export import export as _export
    load_keys = {k: kwargs.pop(k) for k in ("model", "model_kwargs", "task") if k in kwargs}
    return _export(_as_ticket(ticket, **load_keys), target=target, out=out, input_shape=input_shape,
                   format=format, tolerance=tolerance, force=force, **kwargs)
