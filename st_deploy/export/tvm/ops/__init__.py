"""Custom-op families: conv2d/linear layers lowered to our kernels through R.call_dps_packed.

One file per kernel family; KERNEL_FAMILIES maps a layer kind (st_deploy.plan.layer_kind) to the
family that lowers it, so a new kernel is one file plus one line here. Every family takes the
plan's format ("dense", "csr", "bsr4x1") and returns the call plus the implementation it chose,
which the manifest records per layer.

Kernel symbols are called by their module name (e.g. "conv2d_csr", "cuda_conv2d_csr" on GPUs): the Relax VM resolves a
call_dps_packed name in its own library first, and model.so contains the kernels (see
kernel_objects.py), so nothing is looked up in a global registry at load time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import conv2d, dwconv2d, linear

# Activations the kernels apply in their epilogue (st_kernels.h: ST_ACT_*).
KERNEL_ACTS = {"none": 0, "relu": 1, "relu6": 2}


@dataclass
class LayerCall:
    """One conv2d/linear node to lower: its input and (optional) fused residual as Relax exprs."""

    node: Any                       # graph.ir.Node
    fmt: str                        # the plan's format: dense | csr | bsr4x1
    x: Any                          # relax.Expr, NCHW or NC float32
    out_shape: tuple[int, ...]
    act: int                        # KERNEL_ACTS code applied in the epilogue
    residual: Any = None            # relax.Expr added after the activation, or None
    prefix: str = ""                # kernel symbol prefix: "" (CPU) or "cuda_" (TargetSpec.kernel_prefix)


# layer kind -> (can_lower(node) -> reason it cannot or None, lower(LayerCall) -> (relax call, impl))
KERNEL_FAMILIES: dict[str, tuple[Callable[[Any], str | None], Callable[[LayerCall], tuple[Any, str]]]] = {
    "conv1x1": (conv2d.unsupported, conv2d.lower),
    "conv": (conv2d.unsupported, conv2d.lower),
    "grouped": (conv2d.unsupported, conv2d.lower),
    "general": (conv2d.unsupported, conv2d.lower),
    "dw": (dwconv2d.unsupported, dwconv2d.lower),
    "linear": (linear.unsupported, linear.lower),
}

__all__ = ["KERNEL_ACTS", "KERNEL_FAMILIES", "LayerCall"]
