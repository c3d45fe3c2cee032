"""ServedModel alone: the bounded queue (503 when full), batches never over max_batch, stop drains."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from st_deploy.serve.protocol import InferRequest, ProtocolError


class _Recording:
    """A runner that records the batch sizes it ran and can be held at a gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def run(self, x: np.ndarray) -> np.ndarray:
        self.entered.set()
        assert self.gate.wait(60)
        self.batches.append(x.shape[0])
        return x.reshape(x.shape[0], -1)[:, :10] * 2


def _request(batch: int, value: float) -> InferRequest:
    x = np.full((batch, 3, 32, 32), value, np.float32)
    return InferRequest(id=None, inputs={"input": x}, outputs=["classifier.1"], binary={}, batch=batch)


def test_queue_full_is_503_and_stop_drains(onnx_artifact):
    from st_deploy.serve import ServedModel
    runner = _Recording()
    runner.gate.clear()
    model = ServedModel(onnx_artifact, instances=1, max_batch=1, max_queue=2, runner=runner)
    first = model.submit(_request(1, 1.0))
    assert runner.entered.wait(30)          # the one instance holds the first request
    queued = [model.submit(_request(1, v)) for v in (2.0, 3.0)]
    with pytest.raises(ProtocolError, match="queue full") as e:
        model.submit(_request(1, 4.0))
    assert e.value.status == 503 and model.queue_depth() == 2
    runner.gate.set()
    model.stop()                             # finishes what was queued
    for f, v in zip([first, *queued], (1.0, 2.0, 3.0)):
        assert np.all(f.result(30)["classifier.1"] == 2 * v)
    with pytest.raises(ProtocolError, match="shutting down"):
        model.submit(_request(1, 5.0))


def test_batches_respect_max_batch_and_split_back(onnx_artifact):
    from st_deploy.serve import ServedModel
    runner = _Recording()
    runner.gate.clear()
    model = ServedModel(onnx_artifact, instances=1, max_batch=4, runner=runner)
    try:
        hold = model.submit(_request(1, 0.0))
        assert runner.entered.wait(30)
        sizes = [3, 1, 2, 2, 1, 4]               # queued while the instance is busy
        futures = [model.submit(_request(b, float(i + 1))) for i, b in enumerate(sizes)]
        runner.gate.set()
        assert np.all(hold.result(30)["classifier.1"] == 0)
        for i, (b, f) in enumerate(zip(sizes, futures)):
            y = f.result(30)["classifier.1"]
            assert y.shape == (b, 10) and np.all(y == 2 * (i + 1))
        assert runner.batches == [1, 4, 4, 1, 4]  # in order, merged while they fit in 4
    finally:
        model.stop()
