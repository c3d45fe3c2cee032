"""OpenVINO's CPU plugin as a dense baseline: it reads st-deploy's model.dense.onnx directly.

OpenVINO is the fastest dense runtime measured on this project's CPUs (../shared/notes/PLATFORM.md),
so it is what a user will put beside the sparse runtimes. Two pitfalls make its figures easy to
misread, and this module pins both:
- precision: on a CPU with bf16 instructions the plugin's default INFERENCE_PRECISION_HINT is bf16
  (about 1e-2 relative error). "openvino" pins f32; "openvino-bf16" asks for bf16 and is a row of
  its own. The precision recorded is the one the compiled model reports, not the one asked for.
- threads: INFERENCE_NUM_THREADS, with PERFORMANCE_HINT=LATENCY and NUM_STREAMS=1 spelled out
  (2026's defaults, written so a changed default cannot turn a latency figure into a throughput one).
The rest, chosen by measurement (example ticket's model.dense.onnx, 224x224, batch 1, configurations
interleaved in blocks in one process, two runs on this shared 2-vCPU VM under load 2-11, p50):
- ENABLE_CPU_PINNING=False (default True): same at 1 thread (77 vs 79, 80 vs 80 ms); at 2 threads
  unpinned 73 vs 108 ms and 95 vs 104 ms. Pinned workers cannot leave a core that another process,
  or the previous configuration's spinning workers, holds; ORT and TVM do not pin here either.
- a static input shape (model.reshape to the shape timed) over the ONNX file's symbolic batch:
  79 vs 89 and 80 vs 88 ms at 1 thread, 108 vs 121 and 104 vs 125 ms at 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DeployError

INSTALL_HINT = 'pip install "st-deploy[openvino]"'
PRECISION_ASKED = {"openvino": "f32", "openvino-bf16": "bf16"}
# Read back from each compiled model into the benchmark record.
REPORTED = ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "NUM_STREAMS",
            "ENABLE_CPU_PINNING")


def require_openvino() -> Any:
    """The openvino module, or a one-line DeployError naming the install command."""
    try:
        import openvino
    except ImportError:
        raise DeployError(f"runtime openvino needs OpenVINO, which is not installed: {INSTALL_HINT}") from None
    return openvino


def compile_config(threads: int, precision: str) -> dict[str, str]:
    """The CPU plugin properties for one benchmark configuration."""
    if precision not in ("f32", "bf16"):
        raise DeployError(f"OpenVINO precision {precision!r}: choose f32 or bf16")
    return {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": str(threads),
            "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "ENABLE_CPU_PINNING": "False"}


def _precision_name(value: Any) -> str:
    """'f32' / 'bf16' / ... from the plugin's ov.Type (whose str is e.g. "<Type: 'float32'>")."""
    name = getattr(value, "get_type_name", lambda: str(value))()
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(str(name), str(name))


class OpenVinoRun:
    """One compiled model and its infer request; calling it runs one inference.

    `precision` is what the compiled model reports it computes in; `config` the properties read back.
    """

    def __init__(self, model_path: Path, threads: int, precision: str, shape: Sequence[int] | None = None):
        ov = require_openvino()
        core = ov.Core()
        try:
            model = core.read_model(str(model_path))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with multi-line text
            raise DeployError(f"{model_path}: OpenVINO cannot read it ({str(e).strip().splitlines()[0][:200]})") from None
        if shape is not None:
            # A static input shape: the plugin plans memory and picks kernels once, as a latency user would.
            model.reshape({model.input(0): list(shape)})
        self.compiled = core.compile_model(model, "CPU", compile_config(threads, precision))
        self.request = self.compiled.create_infer_request()
        self.config = {k: str(self.compiled.get_property(k)) for k in REPORTED}
        self.precision = _precision_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.config["INFERENCE_PRECISION_HINT"] = self.precision
        self.asked = precision

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        # The input is read in place, as ORT reads it; outputs are copied out, as ORT returns fresh arrays.
        out = self.request.infer({0: x}, share_inputs=True, share_outputs=False)
        return [np.asarray(v) for v in out.values()]
