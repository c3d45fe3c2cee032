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
# The kernels' activation codes (kernels/include/st_kernels.h enum st_act; a test checks the two agree).
# Kernel epilogues apply the first three; st_activate applies every one.
ACT_CODES = {"none": 0, "relu": 1, "relu6": 2, "swish": 3, "hswish": 4, "sigmoid": 5, "hsigmoid": 6, "gelu": 7,
             "tanh": 8}
EPILOGUE_ACTS = ("none", "relu", "relu6")
FORMAT_VERSION = 1


def pair(v: Any) -> tuple[int, int]:
    """An int-or-[h, w] attribute (stride, padding, dilation) as (h, w)."""
    if isinstance(v, (list, tuple)):
        return int(v[0]), int(v[1])
    return int(v), int(v)
