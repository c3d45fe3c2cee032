"""What a user gets without st-deploy: the pruned module exported as it is by torch.onnx.export.

No compaction, no sparse kernels, no channel padding: the masked weights stay dense tensors with
zeros in them. Both `st-deploy bench --runtime ort-plain` and benchmarks/zoo.py time this file in
ONNX Runtime, so "over a plain export" means the same thing in both.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from ..errors import DeployError
from ..io.atomic import atomic_path

PLAIN_OPSET = 17
INPUT_NAME = "input"


def masks_applied(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every torch.nn.utils.prune reparametrisation made permanent (plain
    weights holding the zeros). Modules that multiply by a mask buffer in forward (SuperTickets'
    MaskedConv2d) keep doing so: that is how the user's module computes."""
    plain = copy.deepcopy(model)
    for m in plain.modules():
        for name in [h._tensor_name for h in m._forward_pre_hooks.values()
                     if isinstance(h, prune.BasePruningMethod)]:
            prune.remove(m, name)
    return plain.eval()


def _output_count(module: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        out = module(x)
    if isinstance(out, dict):
        out = list(out.values())
    return len(out) if isinstance(out, (list, tuple)) else 1


def plain_onnx_export(module: nn.Module, input_shape: Sequence[int], path: Path,
                      opset: int = PLAIN_OPSET) -> Path:
    """torch.onnx.export (TorchScript exporter, dynamo=False) of `module` with prune hooks made
    permanent, at `input_shape`'s spatial size with a symbolic batch dimension (as st-deploy's own
    model.dense.onnx has, so batch > 1 runs on the same file). Written atomically to `path`."""
    plain = masks_applied(module)
    x = torch.zeros(tuple(input_shape), dtype=torch.float32)
    n_out = _output_count(plain, x)
    outputs = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    axes = {name: {0: "N"} for name in (INPUT_NAME, *outputs)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            torch.onnx.export(plain, (x,), str(tmp), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=outputs, dynamic_axes=axes)
    except Exception as e:  # the exporter raises many types; the user needs one line naming the step
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeployError(f"plain torch.onnx.export of the module failed: {first[:300]}") from None
    return path


def plain_ort_session(path: Path, threads: int) -> Any:
    """ONNX Runtime as a user runs it: default SessionOptions and the CPU provider, only the
    intra-op thread count set (no st.sparse library, no st-deploy settings)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
