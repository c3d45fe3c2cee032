"""The same Open Inference Protocol app as a Ray Serve deployment: `st-deploy serve DIR --ray`.

Needs: `ray[serve]` (pip install "st-deploy[ray]"), and st-deploy installed on every node that
runs a replica. Promises: `replicas` copies of app.py's routes behind Ray Serve's HTTP proxy at
http://HOST:PORT/v2/..., each replica a ServedModel (its own instances, queue and batching) over
its own copy of the artifact: the folder's files travel with the deployment through Ray's
object store, so nodes need no shared file system. Without an address a local Ray is started
(and stopped by stop()); with one, the app joins that cluster and stop() deletes only this app.

Differences from the embedded server: Ray's proxy receives the request before the replica does
(the replica still refuses a body over the limit from its Content-Length before reading it), and
GET /metrics shows the metrics of the replica that answered; Ray exports its own per-deployment
metrics on its metrics port.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import weakref
from pathlib import Path
from typing import Any

from ..artifact import read_manifest
from ..errors import DeployError
from .app import DEFAULT_MAX_BODY, Admitted, InferenceApp
from .model import ServedModel

MAX_ARTIFACT_BYTES = 2 << 30


def _artifact_files(folder: Path) -> dict[str, bytes]:
    """The artifact folder's regular files (top level only: exports write no subfolders), by name."""
    files, total = {}, 0
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            total += p.stat().st_size
            if total > MAX_ARTIFACT_BYTES:
                raise DeployError(f"{folder}: over {MAX_ARTIFACT_BYTES >> 30} GiB; too large to ship to Ray replicas")
            files[p.name] = p.read_bytes()
    return files


class Replica:
    """One Ray Serve replica: the artifact written to a private temporary folder, one ServedModel."""

    def __init__(self, files: dict[str, bytes], model_kwargs: dict[str, Any], max_body_bytes: int) -> None:
        folder = Path(tempfile.mkdtemp(prefix="st-serve-ray-"))
        weakref.finalize(self, shutil.rmtree, folder, True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        model = ServedModel(folder, **model_kwargs)
        self.app = InferenceApp([model], max_body_bytes=max_body_bytes, metrics=model.metrics)
        self.app.ready = True

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response
        r = self.app.admit(request.method, request.url.path, request.headers)
        if isinstance(r, Admitted):
            body = await request.body()
            r = await asyncio.to_thread(self.app.infer, r, request.headers, body)
        return Response(r.body, status_code=r.status, media_type=r.content_type, headers=r.headers)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class RayServer:
    """A running Ray Serve application of one artifact; .url, .stop(), .wait()."""

    def __init__(self, artifact: str | Path, name: str | None = None, host: str = "127.0.0.1", port: int = 8000,
                 replicas: int = 1, ray_address: str | None = None, runtime: str | None = None, threads: int = 1,
                 instances: int = 1, max_batch: int | None = None, max_delay_ms: float = 0.0,
                 max_body_bytes: int = DEFAULT_MAX_BODY, max_queue: int = 256) -> None:
        try:
            import ray
            from ray import serve as ray_serve
        except ImportError:
            raise DeployError('--ray needs Ray Serve: pip install "ray[serve]" (or st-deploy[ray])') from None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise DeployError(f"--replicas must be an integer >= 1, got {replicas!r}")
        folder = Path(artifact)
        manifest = read_manifest(folder)
        name = name or manifest.get("source", {}).get("name") or folder.name
        kwargs = {"name": name, "runtime": runtime, "threads": threads, "instances": instances,
                  "max_batch": max_batch, "max_delay_ms": max_delay_ms, "max_queue": max_queue}
        # Check every option here, once, before any replica starts (a replica's failure is a Ray log).
        ServedModel(folder, runner=object(), **kwargs).stop()
        files = _artifact_files(folder)
        port = port or _free_port(host)
        self.name, self.host, self.port, self.replicas = name, host, port, replicas
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports unless the user opts in
        self._own_ray = ray_address is None and not ray.is_initialized()
        if ray_address is None:
            # a local Ray listens on loopback only, like the embedded server's default host
            ray.init(include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
                     _node_ip_address="127.0.0.1")
            cpus = ray.cluster_resources().get("CPU", 0)
            if replicas * threads * instances > cpus:
                self.stop()
                raise DeployError(f"--replicas {replicas} x --instances {instances} x --threads {threads} needs "
                                  f"{replicas * threads * instances} CPUs; this machine's Ray has {cpus:g}")
        else:
            try:
                ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
            except Exception as e:  # ConnectionError, ValueError, RuntimeError from ray.init
                raise DeployError(f"--ray-address {ray_address}: cannot join that Ray cluster "
                                  f"({' '.join(str(e).split())[:300]})") from None
        try:
            ray_serve.start(http_options={"host": host, "port": port})
            deployment = ray_serve.deployment(Replica, name=f"st-deploy-{name}", num_replicas=replicas,
                                              ray_actor_options={"num_cpus": threads * instances})
            ray_serve.run(deployment.bind(files, kwargs, max_body_bytes), name=name, route_prefix="/",
                          blocking=False)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        import ray
        from ray import serve as ray_serve
        if not ray.is_initialized():
            return
        try:
            ray_serve.delete(self.name)  # drains in-flight requests, then stops the replicas
        except Exception:  # noqa: BLE001 - already gone, or Serve never started
            pass
        if self._own_ray:
            # serve.shutdown() waited 30 s and more for its controller here; the app is gone already,
            # and this Ray is ours: stopping it ends the controller and proxy with it
            ray.shutdown()

    def wait(self) -> None:
        from .server import wait_for_signal
        wait_for_signal()
        self.stop()
