"""The graph's vocabulary: its ops, activation kinds and attribute forms, in one place.

graph/ir.py documents each op; the passes, exporters and validator read these names.
"""

from __future__ import annotations

from typing import Any

OPS = ("conv2d", "linear", "act", "add", "scale_shift", "resize", "concat", "global_avg_pool", "pool",
       "adaptive_avg_pool", "mul", "flatten", "layer_norm", "gather", "opaque")
LAYER_OPS = ("conv2d", "linear")  # the ops carrying weights (and masks) the planner formats
ACTS = ("none", "relu", "relu6", "swish", "hswish", "sigmoid", "hsigmoid", "gelu", "tanh")
# Activations a conv/linear may carry as its `act` attribute: the ones every kernel epilogue and
# the ONNX custom op apply (st_kernels.h ST_ACT_*, kernels/ort). The others stay act nodes.
LAYER_ACTS = ("none", "relu", "relu6", "swish", "hswish")
FORMAT_VERSION = 1


def pair(v: Any) -> tuple[int, int]:
    """An int-or-[h, w] attribute (stride, padding, dilation) as (h, w)."""
    if isinstance(v, (list, tuple)):
        return int(v[0]), int(v[1])
    return int(v), int(v)
