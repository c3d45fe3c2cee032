"""Opaque nodes: ops st-deploy has no rule for, carried as a small ONNX model each.

A model may call anything (torch.roll, a custom function, a layer type we have never seen).
Refusing such a model would refuse all of it for one op, so the op is kept as it is: the
lowering exports just that op with torch.onnx (standard ONNX ops, opset 17, dynamic batch)
and the node carries the bytes. Every executor reads the same form: the torch GraphModule
runs it with ONNX Runtime, the ONNX exporters inline its nodes, the TVM exporter imports it
with Relax's ONNX frontend. Compaction keeps its input and output channels whole.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import torch

from ..errors import DeployError
from .ir import Node

OPAQUE_OPSET = 17


def opaque_onnx(module: torch.nn.Module, example: list[torch.Tensor], what: str) -> bytes:
    """The ONNX model (inputs in0.., output out, batch dynamic) computing module(*example)."""
    names = [f"in{k}" for k in range(len(example))]
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes: it exports one op well
            torch.onnx.export(module, tuple(example), buf, opset_version=OPAQUE_OPSET, dynamo=False,
                              input_names=names, output_names=["out"],
                              dynamic_axes={n: {0: "N"} for n in [*names, "out"]})
    except Exception as e:
        raise DeployError(f"cannot compact: unsupported op {what} has no rule here and torch.onnx cannot export "
                          f"it either ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    return buf.getvalue()


def onnx_bytes(n: Node) -> bytes:
    return n.params["onnx"].numpy().tobytes()


def run_opaque(n: Node, xs: list[torch.Tensor], sessions: dict[str, Any]) -> torch.Tensor:
    """Run opaque node n on xs with ONNX Runtime (one session per node, kept in `sessions`)."""
    import onnxruntime as ort  # the torch executor needs it only for opaque nodes

    sess = sessions.get(n.name)
    if sess is None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        sess = sessions[n.name] = ort.InferenceSession(onnx_bytes(n), so, providers=["CPUExecutionProvider"])
    feed = {i.name: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
            for i, x in zip(sess.get_inputs(), xs)}
    return torch.from_numpy(sess.run(["out"], feed)[0])


def opaque_ops(graph: Any) -> list[dict[str, str]]:
    """The graph's opaque nodes, for reports and manifests: what runs without our rules."""
    return [{"node": n.name, "op": str(n.attrs.get("target", ""))} for n in graph.nodes if n.op == "opaque"]
