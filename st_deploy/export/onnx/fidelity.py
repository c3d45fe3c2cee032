"""An exported ONNX file's outputs, for the fidelity check (measured as st_deploy.graph.fidelity says)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def run_onnx(path: Path, x: np.ndarray, threads: int = 1) -> list[np.ndarray]:
    from ...runtime.ort import ort_session
    sess = ort_session(path, threads=threads)
    return sess.run(None, {sess.get_inputs()[0].name: x})
