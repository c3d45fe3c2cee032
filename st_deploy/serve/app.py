"""The Open Inference Protocol v2 routes over served models, apart from the HTTP server carrying them.

Routes: GET /v2/health/live, /v2/health/ready, /v2 (server metadata), /v2/models/NAME[/versions/1]
(model metadata), .../ready, .../config (Triton-style), POST .../infer (JSON tensors or the binary
tensor data extension, optionally gzip/deflate-encoded), GET /metrics (Prometheus text).

A transport (server.py's http.server handler, ray_app.py's Ray Serve deployment) calls
`admit(method, path, headers)` before reading any body: it answers every GET and every refusal
(404 unknown model or path, 405 wrong method, 400 for a missing, chunked or over-limit body) at
once, or says how many body bytes to read for an infer; then `infer(...)` with those bytes.
Every client fault is 400 with {"error": "..."} (503 when the queue is full); a runtime failure
is 500 with its message. Nothing of a bad request reaches an instance.
"""

from __future__ import annotations

import json
import re
import sys
import time
import zlib
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from .. import __version__
from ..errors import DeployError
from .metrics import Metrics
from .model import ServedModel
from .protocol import HEADER_LENGTH, ProtocolError, decode_request, encode_response

DEFAULT_MAX_BODY = 64 << 20
MODEL_ROUTE = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(?:/(ready|config|infer))?$")
JSON = "application/json"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


class Headers(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Admitted:
    """An infer request whose body (`length` bytes) is to be read and passed to InferenceApp.infer."""

    model: ServedModel
    length: int
    started: float


def json_reply(status: int, doc: Any) -> Reply:
    return Reply(status, json.dumps(doc).encode())


def error_reply(status: int, message: str) -> Reply:
    return json_reply(status, {"error": " ".join(message.split())[:2000]})


class InferenceApp:
    """Models by name, their metrics, the body limit and how long an infer may wait for its answer."""

    def __init__(self, models: list[ServedModel], max_body_bytes: int = DEFAULT_MAX_BODY,
                 request_timeout: float = 60.0, metrics: Metrics | None = None) -> None:
        if not isinstance(max_body_bytes, int) or isinstance(max_body_bytes, bool) or max_body_bytes < 1:
            raise DeployError(f"--max-body-bytes must be an integer >= 1, got {max_body_bytes!r}")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise DeployError(f"two models share a name: {names}")
        self.models = {m.name: m for m in models}
        self.max_body_bytes, self.request_timeout = max_body_bytes, request_timeout
        self.metrics = metrics or (models[0].metrics if models else Metrics())
        self.ready = False

    def metadata(self) -> dict[str, Any]:
        return {"name": "st-deploy", "version": __version__, "extensions": ["binary_tensor_data"]}

    def metrics_text(self) -> str:
        for m in self.models.values():
            self.metrics.queue_depth(m.name, m.queue_depth())
        return self.metrics.text(list(self.models))

    def stop(self) -> None:
        self.ready = False
        for m in self.models.values():
            m.stop()

    # ---- routing ----
    def admit(self, method: str, raw_path: str, headers: Headers) -> Reply | Admitted:
        path = urlsplit(raw_path).path
        if len(path) > 1:
            path = path.rstrip("/")
        gets = {"/v2/health/live": lambda: json_reply(200, {"live": True}),
                "/v2/health/ready": lambda: json_reply(200 if self.ready else 503, {"ready": self.ready}),
                "/v2": lambda: json_reply(200, self.metadata()),
                "/metrics": lambda: Reply(200, self.metrics_text().encode(), PROMETHEUS)}
        if path in gets:
            return _only(method, "GET", path) or gets[path]()
        m = MODEL_ROUTE.match(path)
        if m is None:
            return error_reply(404, f"no route {path[:200]!r}")
        model = self.models.get(unquote(m.group(1)))
        if model is None:
            return error_reply(404, f"unknown model {unquote(m.group(1))[:200]!r}; this server has "
                                    f"{', '.join(map(repr, self.models))}")
        if m.group(2) not in (None, "1"):
            return error_reply(404, f"model {model.name!r} has version 1 only, not {m.group(2)[:50]!r}")
        action = m.group(3)
        if action == "infer":
            refused = _only(method, "POST", path)
            if refused:
                return refused
            started = time.perf_counter()
            try:
                return Admitted(model, self._length(headers), started)
            except ProtocolError as e:
                self.metrics.request(model.name, time.perf_counter() - started, "bad_request")
                return error_reply(e.status, str(e))
        refused = _only(method, "GET", path)
        if refused:
            return refused
        if action == "ready":
            return json_reply(200 if self.ready else 503, {"name": model.name, "ready": self.ready})
        if action == "config":
            return json_reply(200, model.config())
        return json_reply(200, model.metadata())

    def _length(self, headers: Headers) -> int:
        if headers.get("Transfer-Encoding"):
            raise ProtocolError("chunked request bodies are not supported; send Content-Length")
        raw = headers.get("Content-Length")
        if raw is None:
            raise ProtocolError("an infer request needs a Content-Length header")
        try:
            n = int(raw)
        except ValueError:
            raise ProtocolError(f"Content-Length {str(raw)[:40]!r} is not an integer") from None
        if n < 0:
            raise ProtocolError(f"Content-Length {n} is negative")
        if n > self.max_body_bytes:
            raise ProtocolError(f"request body of {n} bytes is over this server's limit of {self.max_body_bytes} "
                                f"bytes (--max-body-bytes)")
        return n

    def _decode_body(self, headers: Headers, body: bytes) -> bytes:
        limit = self.max_body_bytes
        encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "identity":
            return body
        if encoding not in ("gzip", "deflate"):
            raise ProtocolError(f"Content-Encoding {encoding[:40]!r} is not supported (gzip, deflate, identity)")
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

    def infer(self, admitted: Admitted, headers: Headers, body: bytes) -> Reply:
        """Decode, queue, wait for and encode one infer request (blocks its caller's thread)."""
        model, t0 = admitted.model, admitted.started
        try:
            if len(body) != admitted.length:
                raise ProtocolError(f"request body ended after {len(body)} of its {admitted.length} bytes")
            request = decode_request(self._decode_body(headers, body), headers.get(HEADER_LENGTH), model.inputs,
                                     model.outputs, model.max_batch)
            future = model.submit(request)
            try:
                results = future.result(timeout=self.request_timeout)
            except FutureTimeout:
                raise RuntimeError(f"inference did not finish within {self.request_timeout:g} s") from None
            payload, header_length = encode_response(model.name, "1", request, results,
                                                     {s.name: s for s in model.outputs})
        except ProtocolError as e:
            self.metrics.request(model.name, time.perf_counter() - t0,
                                 "overloaded" if e.status == 503 else "bad_request")
            return error_reply(e.status, str(e))
        except Exception as e:  # noqa: BLE001 - the runtime's failure: 500, and the server keeps serving
            self.metrics.request(model.name, time.perf_counter() - t0, "runtime")
            msg = str(e) if isinstance(e, DeployError) else f"{type(e).__name__}: {e}"
            sys.stderr.write(f"st-deploy serve: {model.name}: inference failed: {' '.join(msg.split())[:500]}\n")
            return error_reply(500, f"inference failed: {msg}")
        self.metrics.request(model.name, time.perf_counter() - t0)
        if header_length is None:
            return Reply(200, payload)
        return Reply(200, payload, "application/octet-stream", {HEADER_LENGTH: str(header_length)})


def _only(method: str, allowed: str, path: str) -> Reply | None:
    """A 405 reply unless method is the allowed one."""
    if method == allowed:
        return None
    return error_reply(405, f"{method} is not allowed on {path[:200]}; use {allowed}")
