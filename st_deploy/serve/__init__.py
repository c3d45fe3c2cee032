"""Serving exported artifacts: the Open Inference Protocol over HTTP, Ray Serve, Triton hand-off.

    server = st_deploy.serve.serve("artifact", port=0)     # bound and serving; server.url
    ...                                                     # tritonclient.http.InferenceServerClient
    server.stop()

model.py: an artifact behind a queue, N instances, dynamic batching. protocol.py: v2 request and
response bodies (JSON and binary tensor data). app.py: the protocol's routes, apart from any
transport. server.py: those routes on http.server. ray_app.py: the same routes as a Ray Serve
deployment. metrics.py: Prometheus text. triton.py: a Triton model repository for an ONNX artifact.
"""

from __future__ import annotations

from pathlib import Path

from .app import DEFAULT_MAX_BODY, InferenceApp
from .metrics import Metrics
from .model import RUNTIMES, ServedModel
from .protocol import ProtocolError, TensorSpec
from .server import InferenceServer
from .triton import write_triton_repo

__all__ = ["serve", "ServedModel", "InferenceServer", "InferenceApp", "Metrics", "ProtocolError", "TensorSpec",
           "RUNTIMES", "DEFAULT_MAX_BODY", "write_triton_repo"]


def serve(artifact: str | Path, name: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          runtime: str | None = None, threads: int = 1, instances: int = 1, max_batch: int | None = None,
          max_delay_ms: float = 0.0, max_body_bytes: int = DEFAULT_MAX_BODY, max_queue: int = 256,
          verbose: bool = False) -> InferenceServer:
    """Load `artifact` and serve it over HTTP (Open Inference Protocol v2); returns the started server.

    runtime: ort-sparse (default for ONNX artifacts), ort-dense, or tvm (TVM artifacts).
    threads: each instance's runtime threads; instances: runs at once. max_batch: for artifacts
    with a dynamic batch (ONNX exports), the largest merged batch (default 8; 1 turns batching
    off); max_delay_ms: how long an instance waits for more requests to merge (default 0: only
    those already queued). port 0 picks a free port (server.port).
    """
    metrics = Metrics()
    model = ServedModel(artifact, name=name, runtime=runtime, threads=threads, instances=instances,
                        max_batch=max_batch, max_delay_ms=max_delay_ms, max_queue=max_queue, metrics=metrics)
    try:
        server = InferenceServer([model], host=host, port=port, max_body_bytes=max_body_bytes,
                                 metrics=metrics, verbose=verbose)
    except BaseException:
        model.stop()
        raise
    return server.start()
