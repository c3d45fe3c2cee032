"""The embedded server: app.py's Open Inference Protocol routes on the standard library's
ThreadingHTTPServer (HTTP/1.1 keep-alive, a thread per connection, inference on the models'
instances). A body over the limit is refused from its Content-Length before any of it is read,
and that connection is closed, as is any other whose body was left unread.
"""

from __future__ import annotations

import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .. import __version__
from ..errors import DeployError
from .app import DEFAULT_MAX_BODY, Admitted, InferenceApp, Reply
from .metrics import Metrics
from .model import ServedModel


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: tritonclient pools its connections
    server_version = f"st-deploy/{__version__}"
    timeout = 60  # seconds a connection may sit between bytes before its thread gives it up

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)

    def _send(self, reply: Reply, close: bool) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(reply.body)

    def _handle(self, method: str) -> None:
        app: InferenceApp = self.server.app  # type: ignore[attr-defined]
        body_pending = method == "POST" and self.headers.get("Content-Length", "0") != "0"
        try:
            r = app.admit(method, self.path, self.headers)
            if isinstance(r, Admitted):
                body = self.rfile.read(r.length)
                # a short body means the client stopped sending: answer and close
                return self._send(app.infer(r, self.headers, body), close=len(body) != r.length)
            self._send(r, close=body_pending)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")


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
        self.app = InferenceApp(models, max_body_bytes, request_timeout, metrics)
        self.models = self.app.models
        try:
            self.httpd = _HTTPServer((host, port), _Handler)
        except OSError as e:
            raise DeployError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        self.httpd.app = self.app  # type: ignore[attr-defined]
        self.httpd.verbose = verbose  # type: ignore[attr-defined]
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> InferenceServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="st-serve-http", daemon=True)
        self._thread.start()
        self.app.ready = True
        return self

    def stop(self) -> None:
        self.app.ready = False
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(10)
        self.httpd.server_close()
        self.app.stop()

    def __enter__(self) -> InferenceServer:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def wait(self) -> None:
        """Serve until SIGINT or SIGTERM (main thread only), then stop."""
        wait_for_signal()
        self.stop()


def wait_for_signal() -> None:
    """Block the main thread until SIGINT or SIGTERM."""
    done = threading.Event()
    previous = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(0.5):
            pass
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
