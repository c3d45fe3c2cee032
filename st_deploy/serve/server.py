"""The Open Inference Protocol v2 REST server (KServe v2, Triton's HTTP API) on http.server.

Routes: GET /v2/health/live, /v2/health/ready, /v2 (server metadata), /v2/models/NAME[/versions/1]
(model metadata), .../ready, .../config (Triton-style), POST .../infer (JSON tensors or the binary
tensor data extension, optionally gzip/deflate-encoded), GET /metrics (Prometheus text).

Every client fault is 400 with {"error": "..."} (404 for an unknown model or path, 503 when the
queue is full); a runtime failure is 500 with its message. A body over max_body_bytes is refused
from its Content-Length before any of it is read, and that connection is closed. Nothing of a bad
request reaches an instance, and an instance that failed keeps serving.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
import zlib
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from .. import __version__
from ..errors import DeployError
from .metrics import Metrics
from .model import ServedModel
from .protocol import HEADER_LENGTH, ProtocolError, decode_request, encode_response

DEFAULT_MAX_BODY = 64 << 20
MODEL_ROUTE = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(?:/(ready|config|infer))?$")
JSON = "application/json"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: tritonclient pools its connections
    server_version = f"st-deploy/{__version__}"
    timeout = 60  # seconds a connection may sit between bytes before its thread gives it up

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if self.server.app.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)

    # ---- replies ----
    def _send(self, status: int, body: bytes, content_type: str = JSON, headers: dict[str, str] | None = None,
              close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: Any, close: bool = False) -> None:
        self._send(status, json.dumps(doc).encode(), close=close)

    def _error(self, status: int, message: str, close: bool = False) -> None:
        self._json(status, {"error": " ".join(message.split())[:2000]}, close=close)

    # ---- routing ----
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def _route(self, method: str) -> None:
        app: InferenceServer = self.server.app  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        if len(path) > 1:
            path = path.rstrip("/")
        body_pending = method == "POST" and self.headers.get("Content-Length", "0") != "0"
        try:
            if path == "/v2/health/live":
                return self._only(method, "GET") or self._json(200, {"live": True})
            if path == "/v2/health/ready":
                return self._only(method, "GET") or self._json(200 if app.ready else 503, {"ready": app.ready})
            if path == "/v2":
                return self._only(method, "GET") or self._json(200, app.metadata())
            if path == "/metrics":
                return self._only(method, "GET") or self._send(200, app.metrics_text().encode(),
                                                               "text/plain; version=0.0.4; charset=utf-8")
            m = MODEL_ROUTE.match(path)
            if m is None:
                return self._error(404, f"no route {path[:200]!r}", close=body_pending)
            model = app.models.get(unquote(m.group(1)))
            if model is None:
                return self._error(404, f"unknown model {unquote(m.group(1))[:200]!r}; this server has "
                                        f"{', '.join(map(repr, app.models))}", close=body_pending)
            if m.group(2) not in (None, "1"):
                return self._error(404, f"model {model.name!r} has version 1 only, not {m.group(2)[:50]!r}",
                                   close=body_pending)
            action = m.group(3)
            if action == "infer":
                return self._only(method, "POST") or self._infer(app, model)
            if self._only(method, "GET"):
                return None
            if action == "ready":
                return self._json(200 if app.ready else 503, {"name": model.name, "ready": app.ready})
            if action == "config":
                return self._json(200, model.config())
            return self._json(200, model.metadata())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _only(self, method: str, allowed: str) -> bool:
        """Answer 405 (and say so) unless method is the allowed one."""
        if method == allowed:
            return False
        self._error(405, f"{method} is not allowed on {urlsplit(self.path).path[:200]}; use {allowed}",
                    close=method == "POST")
        return True

    # ---- inference ----
    def _body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise ProtocolError("chunked request bodies are not supported; send Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise ProtocolError("an infer request needs a Content-Length header")
        try:
            n = int(raw)
        except ValueError:
            raise ProtocolError(f"Content-Length {raw[:40]!r} is not an integer") from None
        if n < 0:
            raise ProtocolError(f"Content-Length {n} is negative")
        if n > limit:
            raise ProtocolError(f"request body of {n} bytes is over this server's limit of {limit} bytes "
                                f"(--max-body-bytes)")
        body = self.rfile.read(n)
        if len(body) != n:
            raise ProtocolError(f"request body ended after {len(body)} of its {n} bytes")
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding in ("gzip", "deflate"):
            d = zlib.decompressobj(31 if encoding == "gzip" else 15)
            try:
                out = d.decompress(body, limit + 1)
            except zlib.error as e:
                raise ProtocolError(f"request body is not valid {encoding} data ({e})") from None
            if len(out) > limit or d.unconsumed_tail:
                raise ProtocolError(f"decompressed request body is over this server's limit of {limit} bytes")
            if not d.eof:
                raise ProtocolError(f"request body is truncated {encoding} data")
            return out
        if encoding != "identity":
            raise ProtocolError(f"Content-Encoding {encoding[:40]!r} is not supported (gzip, deflate, identity)")
        return body

    def _infer(self, app: InferenceServer, model: ServedModel) -> None:
        t0 = time.perf_counter()
        read_whole = False
        try:
            body = self._body(app.max_body_bytes)
            read_whole = True
            request = decode_request(body, self.headers.get(HEADER_LENGTH), model.inputs, model.outputs,
                                     model.max_batch)
            future = model.submit(request)
            try:
                results = future.result(timeout=app.request_timeout)
            except FutureTimeout:
                raise RuntimeError(f"inference did not finish within {app.request_timeout:g} s") from None
            payload, header_length = encode_response(model.name, "1", request, results,
                                                     {s.name: s for s in model.outputs})
        except ProtocolError as e:
            app.metrics.request(model.name, time.perf_counter() - t0, "overloaded" if e.status == 503 else "bad_request")
            return self._error(e.status, str(e), close=not read_whole)
        except Exception as e:  # noqa: BLE001 - the runtime's failure: 500, and the server keeps serving
            app.metrics.request(model.name, time.perf_counter() - t0, "runtime")
            msg = f"{type(e).__name__}: {e}" if not isinstance(e, DeployError) else str(e)
            sys.stderr.write(f"st-deploy serve: {model.name}: inference failed: {' '.join(msg.split())[:500]}\n")
            return self._error(500, f"inference failed: {msg}")
        if header_length is None:
            self._send(200, payload)
        else:
            self._send(200, payload, "application/octet-stream", {HEADER_LENGTH: str(header_length)})
        app.metrics.request(model.name, time.perf_counter() - t0)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True        # idle keep-alive connections never hold up a stop
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64


class InferenceServer:
    """Models behind one HTTP endpoint. Binds at construction (port 0: a free port; see .port),
    serves after start(); stop() ends both the listener and the models' instances."""

    def __init__(self, models: list[ServedModel], host: str = "127.0.0.1", port: int = 8000,
                 max_body_bytes: int = DEFAULT_MAX_BODY, request_timeout: float = 60.0,
                 metrics: Metrics | None = None, verbose: bool = False) -> None:
        if not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise DeployError(f"--max-body-bytes must be an integer >= 1, got {max_body_bytes!r}")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise DeployError(f"two models share a name: {names}")
        self.models = {m.name: m for m in models}
        self.max_body_bytes, self.request_timeout, self.verbose = max_body_bytes, request_timeout, verbose
        self.metrics = metrics or (models[0].metrics if models else Metrics())
        try:
            self.httpd = _HTTPServer((host, port), _Handler)
        except OSError as e:
            raise DeployError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        self.httpd.app = self  # type: ignore[attr-defined]
        self.host, self.port = host, self.httpd.server_address[1]
        self.ready = False
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def metadata(self) -> dict[str, Any]:
        return {"name": "st-deploy", "version": __version__, "extensions": ["binary_tensor_data"]}

    def metrics_text(self) -> str:
        for m in self.models.values():
            self.metrics.queue_depth(m.name, m.queue_depth())
        return self.metrics.text(list(self.models))

    def start(self) -> InferenceServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="st-serve-http", daemon=True)
        self._thread.start()
        self.ready = True
        return self

    def stop(self) -> None:
        self.ready = False
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(10)
        self.httpd.server_close()
        for m in self.models.values():
            m.stop()

    def __enter__(self) -> InferenceServer:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def wait(self) -> None:
        """Serve until SIGINT or SIGTERM (main thread only), then stop."""
        done = threading.Event()
        previous = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not done.wait(0.5):
                pass
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            self.stop()
