"""A served artifact: its tensor specs, N instances behind one queue, and dynamic batching.

Needs: an st-deploy artifact folder (manifest.json) or any runner object with `.run(x)`.
Promises: `submit(request)` returns a Future of {output name: array} for that request alone.

Instances are worker threads taking work from one bounded queue and calling one shared runner
(every runner is safe under concurrent callers, st_deploy.runtime.runner): N instances run up to N
batches at once. Where the artifact's batch dimension is dynamic (an ONNX export, "N" in the
manifest), a worker that takes a request also takes the requests already queued behind it, and
waits up to max_delay_ms for more, while their batches sum to at most max_batch; it runs them as
one batch and splits the outputs back. A failing batch of several requests is retried one
request at a time, so one request's runtime failure never fails its neighbours.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import MANIFEST_FILE, read_manifest
from ..errors import DeployError
from .metrics import Metrics
from .protocol import DATATYPES, InferRequest, ProtocolError, TensorSpec

RUNTIMES = ("ort-sparse", "ort-dense", "tvm")
DEFAULT_MAX_BATCH = 8


def tensor_spec(entry: dict[str, Any], where: str) -> TensorSpec:
    dtype = entry.get("dtype", "float32")
    if dtype not in DATATYPES:
        raise DeployError(f"{where}: tensor {entry.get('name')!r} has dtype {dtype!r}, which cannot be served")
    shape = tuple(-1 if isinstance(d, str) else int(d) for d in entry["shape"])
    return TensorSpec(name=str(entry["name"]), datatype=DATATYPES[dtype], shape=shape)


def default_runtime(kind: str) -> str:
    return "ort-sparse" if kind == "onnx" else "tvm"


@dataclass
class _Work:
    request: InferRequest
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)


class ServedModel:
    """One artifact behind a queue and `instances` worker threads (see the module docstring).

    runner: an object with .run(x) -> array | list of arrays, for tests and custom runtimes;
    default: st_deploy.load(folder, threads, dense=runtime == "ort-dense").
    """

    def __init__(self, folder: str | Path, name: str | None = None, runtime: str | None = None,
                 threads: int = 1, instances: int = 1, max_batch: int | None = None,
                 max_delay_ms: float = 0.0, max_queue: int = 256, runner: Any = None,
                 metrics: Metrics | None = None) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        kind = self.manifest["target"]["backend"]
        self.runtime = runtime or default_runtime(kind)
        if self.runtime not in RUNTIMES:
            raise DeployError(f"--runtime {self.runtime!r}: choose one of {', '.join(RUNTIMES)}")
        if (kind == "tvm") != (self.runtime == "tvm"):
            raise DeployError(f"{self.folder}: a {kind} artifact cannot run on --runtime {self.runtime} "
                              f"(choose {'tvm' if kind == 'tvm' else 'ort-sparse or ort-dense'})")
        for flag, v in (("--instances", instances), ("--threads", threads), ("--max-queue", max_queue)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise DeployError(f"{flag} must be an integer >= 1, got {v!r}")
        if not isinstance(max_delay_ms, (int, float)) or not 0 <= max_delay_ms <= 10_000:
            raise DeployError(f"--max-delay-ms must be between 0 and 10000, got {max_delay_ms!r}")
        self.name = name or self.manifest.get("source", {}).get("name") or self.folder.name
        if not self.name or "/" in self.name or not self.name.isprintable():
            raise DeployError(f"--name {self.name!r}: a model name must be printable and hold no '/'")
        where = str(self.folder / MANIFEST_FILE)
        self.inputs = [tensor_spec(e, where) for e in self.manifest["inputs"]]
        self.outputs = [tensor_spec(e, where) for e in self.manifest["outputs"]]
        if len(self.inputs) != 1:
            raise DeployError(f"{where}: {len(self.inputs)} inputs; st-deploy serves single-input artifacts")
        self.dynamic_batch = self.inputs[0].shape[:1] == (-1,)
        if max_batch is None:
            max_batch = DEFAULT_MAX_BATCH if self.dynamic_batch else 1
        if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
            raise DeployError(f"--max-batch must be an integer >= 1, got {max_batch!r}")
        if max_batch > 1 and not self.dynamic_batch:
            raise DeployError(f"--max-batch {max_batch}: this artifact's input {self.inputs[0].name!r} has a fixed "
                              f"shape {list(self.inputs[0].shape)}; batching needs an ONNX export (batch 'N')")
        self.max_batch, self.max_delay = max_batch, max_delay_ms / 1000.0
        self.threads, self.instances, self.max_queue = threads, instances, max_queue
        self.metrics = metrics or Metrics()
        self.runner = runner if runner is not None else self._load_runner()
        self._queue: deque[_Work] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._workers = [threading.Thread(target=self._work, name=f"st-serve-{self.name}-{i}", daemon=True)
                         for i in range(instances)]
        for w in self._workers:
            w.start()

    def _load_runner(self) -> Any:
        from ..runtime.runner import load
        return load(self.folder, threads=self.threads, dense=self.runtime == "ort-dense",
                    max_vms=self.instances if self.runtime == "tvm" else None)

    # ---- protocol-facing description ----
    @property
    def platform(self) -> str:
        return "st-deploy/onnxruntime" if self.runtime.startswith("ort") else "st-deploy/tvm"

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "versions": ["1"], "platform": self.platform,
                "inputs": [s.metadata() for s in self.inputs], "outputs": [s.metadata() for s in self.outputs]}

    def config(self) -> dict[str, Any]:
        """Triton-style model configuration (what tritonclient's get_model_config reads)."""
        def dims(s: TensorSpec) -> list[int]:
            return list(s.shape[1:]) if self.dynamic_batch else list(s.shape)
        return {"name": self.name, "platform": self.platform, "backend": self.runtime,
                "max_batch_size": self.max_batch if self.dynamic_batch else 0,
                "input": [{"name": s.name, "data_type": "TYPE_" + s.datatype, "dims": dims(s)} for s in self.inputs],
                "output": [{"name": s.name, "data_type": "TYPE_" + s.datatype, "dims": dims(s)} for s in self.outputs],
                "instance_group": [{"count": self.instances, "kind": "KIND_CPU"}],
                "dynamic_batching": {"max_queue_delay_microseconds": int(self.max_delay * 1e6)}
                if self.dynamic_batch and self.max_batch > 1 else None}

    # ---- queue and instances ----
    def submit(self, request: InferRequest) -> Future:
        """Queue a checked request; the Future gives {output name: array} or raises the runtime's error.
        A full queue is a ProtocolError with status 503."""
        work = _Work(request)
        with self._cv:
            if self._stopping:
                raise ProtocolError(f"model {self.name!r} is shutting down", status=503)
            if len(self._queue) >= self.max_queue:
                raise ProtocolError(f"model {self.name!r}: queue full ({self.max_queue} requests waiting)",
                                    status=503)
            self._queue.append(work)
            self.metrics.queue_depth(self.name, len(self._queue))
            self._cv.notify()
        return work.future

    def queue_depth(self) -> int:
        return len(self._queue)

    def _take_batch(self) -> list[_Work] | None:
        with self._cv:
            while not self._queue and not self._stopping:
                self._cv.wait()
            if not self._queue:
                return None
            batch = [self._queue.popleft()]
            size = batch[0].request.batch
            deadline = time.perf_counter() + self.max_delay
            while size < self.max_batch:
                if self._queue:
                    nxt = self._queue[0].request.batch
                    if size + nxt > self.max_batch:
                        break
                    batch.append(self._queue.popleft())
                    size += nxt
                    continue
                left = deadline - time.perf_counter()
                if left <= 0 or self._stopping:
                    break
                self._cv.wait(left)
            self.metrics.queue_depth(self.name, len(self._queue))
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            self.metrics.batch(self.name, sum(w.request.batch for w in batch))
            try:
                self._run(batch)
            except BaseException as e:  # noqa: BLE001 - a bug of ours must not kill the instance silently
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(e)

    def _outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        y = self.runner.run(x)
        ys = y if isinstance(y, (list, tuple)) else [y]
        if len(ys) != len(self.outputs):
            raise RuntimeError(f"the runtime returned {len(ys)} outputs, the manifest lists {len(self.outputs)}")
        return {s.name: np.asarray(a) for s, a in zip(self.outputs, ys)}

    def _run(self, batch: list[_Work]) -> None:
        name = self.inputs[0].name
        if len(batch) == 1:
            w = batch[0]
            try:
                w.future.set_result(self._outputs(w.request.inputs[name]))
            except Exception as e:  # noqa: BLE001 - the runtime's failure goes back to its request
                w.future.set_exception(e)
            return
        try:
            out = self._outputs(np.concatenate([w.request.inputs[name] for w in batch]))
        except Exception:  # noqa: BLE001 - retried one by one below, so each request gets its own answer
            for w in batch:
                self._run([w])
            return
        start = 0
        for w in batch:
            n = w.request.batch
            w.future.set_result({k: v[start:start + n] for k, v in out.items()})
            start += n

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking requests, finish the queued ones, and join the instances."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        for w in self._workers:
            w.join(timeout)
