"""`st-deploy serve`'s HTTP server: tritonclient against it (binary and JSON tensors), concurrent
clients, dynamic batching, every malformed-request category, runtime failures, metrics, the CLI."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.artifacts import inputs
from tests.conftest import import_test_extra

tritonhttp = import_test_extra("tritonclient.http")

LIMIT = 1 << 20  # --max-body-bytes of the test servers
DEADLINE_S = 120.0


def _close(got: np.ndarray, ref: np.ndarray) -> bool:
    """Same outputs up to float reassociation (a merged batch may take other kernel paths)."""
    return got.shape == ref.shape and float(np.abs(got - ref).max()) <= 1e-5 * max(1.0, float(np.abs(ref).max()))


@pytest.fixture(scope="module")
def reference(onnx_artifact):
    import st_deploy
    return st_deploy.load(onnx_artifact, threads=1)


@pytest.fixture(scope="module")
def server(onnx_artifact):
    from st_deploy.serve import serve
    s = serve(onnx_artifact, name="m", port=0, instances=2, max_body_bytes=LIMIT)
    yield s
    s.stop()


def _client(server):
    return tritonhttp.InferenceServerClient(f"127.0.0.1:{server.port}", connection_timeout=30, network_timeout=30)


def _infer(client, x: np.ndarray, binary: bool, name: str = "m"):
    i = tritonhttp.InferInput("input", list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=binary)
    outs = None if binary else [tritonhttp.InferRequestedOutput("classifier.1", binary_data=False)]
    return client.infer(name, [i], outputs=outs, request_id="r1")


def _raw(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         send_body: bool = True) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path)
        hdrs = {"Content-Type": "application/json"}
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        hdrs.update(headers or {})
        for k, v in hdrs.items():
            if v is not None:
                conn.putheader(k, v)
        conn.endheaders()
        if body is not None and send_body:
            conn.send(body)
        r = conn.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else {}
    finally:
        conn.close()


def _request_json(x: np.ndarray, **extra) -> dict:
    t = {"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
    t.update(extra)
    return {"inputs": [t]}


def test_tritonclient_binary_and_json(server, reference):
    c = _client(server)
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("m")
    meta = c.get_model_metadata("m")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert meta["outputs"] == [{"name": "classifier.1", "datatype": "FP32", "shape": [-1, 10]}]
    assert c.get_model_config("m")["max_batch_size"] == 8
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]
    x = inputs(1, batch=3, seed=10)[0]
    ref = reference.run(x)
    for binary in (True, False):
        r = _infer(c, x, binary)
        assert r.get_response()["id"] == "r1"
        out = r.get_response()["outputs"][0]
        assert ("parameters" in out) == binary and ("data" in out) != binary
        assert _close(r.as_numpy("classifier.1"), ref)
    c.close()


def test_8_concurrent_clients_every_answer_checked(server, reference):
    xs = inputs(8, seed=11)
    refs = [reference.run(x) for x in xs]
    problems: list[str] = []
    start = threading.Barrier(8)
    deadline = time.monotonic() + DEADLINE_S

    def client(k: int) -> None:
        c = _client(server)
        start.wait()
        for i in range(12):
            if time.monotonic() > deadline:
                problems.append(f"client {k}: deadline passed")
                break
            j = (k + i) % len(xs)
            try:
                y = _infer(c, xs[j], binary=(i % 2 == 0)).as_numpy("classifier.1")
            except Exception as e:  # noqa: BLE001 - reported
                problems.append(f"client {k} request {i}: {e}")
                continue
            if not _close(y, refs[j]):
                problems.append(f"client {k} request {i}: wrong answer")
        c.close()

    ts = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(DEADLINE_S + 10)
    assert not any(t.is_alive() for t in ts)
    assert problems == []


def test_dynamic_batching_merges_and_splits_right(onnx_artifact, reference):
    from st_deploy.serve import serve
    with serve(onnx_artifact, name="b", port=0, instances=1, max_batch=8, max_delay_ms=150) as s:
        xs = inputs(6, seed=12) + inputs(1, batch=2, seed=13)  # 6 single images and one batch of 2
        refs = [reference.run(x) for x in xs]
        got: dict[int, np.ndarray] = {}
        start = threading.Barrier(len(xs))

        def client(k: int) -> None:
            c = _client(s)
            start.wait()
            got[k] = _infer(c, xs[k], binary=True, name="b").as_numpy("classifier.1")
            c.close()

        ts = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(len(xs))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(DEADLINE_S)
        assert sorted(got) == list(range(len(xs)))
        assert all(_close(got[k], refs[k]) for k in got)
        m = _metrics(s)
        runs = m['st_serve_batch_size_count{model="b"}']
        assert m['st_serve_batch_size_sum{model="b"}'] == 8 and runs < len(xs), "nothing was merged"


def test_tvm_artifact_serves_batch_one(tvm_artifact):
    import st_deploy
    from st_deploy.errors import DeployError
    from st_deploy.serve import serve
    x = inputs(1, seed=14)[0]
    ref = st_deploy.load(tvm_artifact, threads=1).run(x)
    with serve(tvm_artifact, name="t", port=0, instances=2) as s:
        c = _client(s)
        assert c.get_model_metadata("t")["inputs"][0]["shape"] == [1, 3, 32, 32]
        assert _close(_infer(c, x, True, "t").as_numpy("classifier.1"), ref)
        with pytest.raises(Exception, match="shape"):
            _infer(c, inputs(1, batch=2)[0], True, "t")
        c.close()
    with pytest.raises(DeployError, match="fixed shape"):
        serve(tvm_artifact, port=0, max_batch=4)
    with pytest.raises(DeployError, match="cannot run on --runtime"):
        serve(tvm_artifact, port=0, runtime="ort-sparse")


GOOD = inputs(1, seed=15)[0]
BINARY = GOOD.tobytes()
HEADER = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32],
                                 "parameters": {"binary_data_size": len(BINARY)}}]}).encode()
MALFORMED = {
    "malformed JSON": (b'{"inputs": [', {}, "malformed request JSON"),
    "JSON not an object": (b"[1, 2]", {}, "must be an object"),
    "inputs not a list": (b'{"inputs": {"name": "input"}}', {}, "must be a list"),
    "unknown input name": (json.dumps({"inputs": [{**_request_json(GOOD)["inputs"][0], "name": "x"}]}).encode(), {},
                           "unknown input 'x'"),
    "missing input": (b'{"inputs": []}', {}, "missing input 'input'"),
    "wrong datatype": (json.dumps(_request_json(GOOD, datatype="FP64")).encode(), {}, "datatype 'FP64'"),
    "wrong shape": (json.dumps(_request_json(GOOD, shape=[1, 3, 32, 31])).encode(), {}, "shape"),
    "batch over max": (json.dumps(_request_json(np.zeros((9, 3, 32, 32), np.float32))).encode(), {},
                       "batch 9"),
    "too few values": (json.dumps({"inputs": [{**_request_json(GOOD)["inputs"][0], "data": [1.0, 2.0]}]}).encode(),
                       {}, "2 values"),
    "data not numbers": (json.dumps({"inputs": [{**_request_json(GOOD)["inputs"][0], "data": ["a"] * 3072}]})
                         .encode(), {}, "not a (nested) list of numbers"),
    "unknown output": (json.dumps({**_request_json(GOOD), "outputs": [{"name": "nope"}]}).encode(), {},
                       "unknown output 'nope'"),
    "binary header length not a number": (HEADER + BINARY, {"Inference-Header-Content-Length": "x"},
                                          "not an integer"),
    "binary header length past the body": (HEADER + BINARY, {"Inference-Header-Content-Length": str(10 ** 9)},
                                           "outside the body"),
    "binary header cut short": (HEADER + BINARY, {"Inference-Header-Content-Length": str(len(HEADER) - 5)},
                                "malformed request JSON"),
    "binary data short": (HEADER + BINARY[:-4], {"Inference-Header-Content-Length": str(len(HEADER))},
                          "binary data ends"),
    "binary data left over": (HEADER + BINARY + b"\0" * 8, {"Inference-Header-Content-Length": str(len(HEADER))},
                              "8 bytes of binary data after"),
    "binary size disagrees with shape": (HEADER.replace(b"12288", b"12284") + BINARY[:-4],
                                         {"Inference-Header-Content-Length": str(len(HEADER))},
                                         "binary_data_size 12284"),
    "bad gzip": (b"not gzip", {"Content-Encoding": "gzip"}, "not valid gzip"),
    "unknown encoding": (b"{}", {"Content-Encoding": "br"}, "not supported"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_is_400_and_server_keeps_serving(server, reference, case):
    body, headers, message = MALFORMED[case]
    status, doc = _raw(server, "POST", "/v2/models/m/infer", body, headers)
    assert status == 400 and set(doc) == {"error"} and message in doc["error"], doc
    c = _client(server)
    assert _close(_infer(c, GOOD, True).as_numpy("classifier.1"), reference.run(GOOD))
    c.close()


def test_payload_over_limit_refused_before_it_is_read(server):
    # only the headers are sent: the answer must come without the server waiting for the body
    t0 = time.monotonic()
    status, doc = _raw(server, "POST", "/v2/models/m/infer", b"x" * (LIMIT + 1), send_body=False)
    assert status == 400 and "over this server's limit" in doc["error"]
    assert time.monotonic() - t0 < 10
    status, doc = _raw(server, "POST", "/v2/models/m/infer", None, {"Content-Length": None})
    assert status == 400 and "Content-Length" in doc["error"]
    status, doc = _raw(server, "POST", "/v2/models/m/infer", b"{}", {"Transfer-Encoding": "chunked"})
    assert status == 400 and "chunked" in doc["error"]


def test_gzip_request_and_routes(server, reference):
    import gzip
    body = json.dumps({**_request_json(GOOD), "id": "z"}).encode()
    status, doc = _raw(server, "POST", "/v2/models/m/versions/1/infer", gzip.compress(body),
                       {"Content-Encoding": "gzip"})
    assert status == 200 and doc["id"] == "z" and doc["model_name"] == "m"
    y = np.asarray(doc["outputs"][0]["data"], np.float32).reshape(doc["outputs"][0]["shape"])
    assert _close(y, reference.run(GOOD))
    bomb = gzip.compress(b" " * (LIMIT + 10))  # small on the wire, over the limit once inflated
    status, doc = _raw(server, "POST", "/v2/models/m/infer", bomb, {"Content-Encoding": "gzip"})
    assert status == 400 and "decompressed" in doc["error"]
    assert _raw(server, "GET", "/v2/models/nope")[0] == 404
    assert _raw(server, "GET", "/v2/models/m/versions/2")[0] == 404
    assert _raw(server, "GET", "/v2/nothing/here")[0] == 404
    assert _raw(server, "GET", "/v2/models/m/infer")[0] == 405
    assert _raw(server, "GET", "/v2/models/m/ready")[0] == 200


class _FailsOnNaN:
    """A runner that fails the way a runtime does, for inputs holding NaN."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def run(self, x):
        if np.isnan(x).any():
            raise RuntimeError("kernel failed: NaN in input")
        return self.inner.run(x)


def test_runtime_failure_is_500_and_neighbours_in_its_batch_succeed(onnx_artifact, reference):
    from st_deploy.serve import InferenceServer, ServedModel
    model = ServedModel(onnx_artifact, name="f", instances=1, max_batch=8, max_delay_ms=150,
                        runner=_FailsOnNaN(reference))
    with InferenceServer([model], port=0, max_body_bytes=LIMIT) as s:
        xs = inputs(4, seed=16)
        xs[1] = xs[1].copy()
        xs[1][0, 0, 0, 0] = np.nan
        codes: dict[int, int] = {}
        errors: list[str] = []
        start = threading.Barrier(len(xs))

        def client(k: int) -> None:
            start.wait()
            status, doc = _raw(s, "POST", "/v2/models/f/infer", json.dumps(_request_json(xs[k])).encode())
            codes[k] = status
            errors.extend([doc["error"]] if status != 200 else [])

        ts = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(len(xs))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(DEADLINE_S)
        assert codes == {0: 200, 1: 500, 2: 200, 3: 200}
        assert errors == ["inference failed: RuntimeError: kernel failed: NaN in input"]
        status, _ = _raw(s, "POST", "/v2/models/f/infer", json.dumps(_request_json(xs[0])).encode())
        assert status == 200
        m = _metrics(s)
        assert m['st_serve_request_failures_total{model="f",reason="runtime"}'] == 1
        assert m['st_serve_requests_total{model="f"}'] == 5


def _metrics(server) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    text = r.read().decode()
    conn.close()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            assert not line or re.match(r"# (HELP|TYPE) st_serve_\w+ ", line), line
            continue
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
    return out


def test_metrics(server):
    before = _metrics(server)
    _raw(server, "POST", "/v2/models/m/infer", b"{bad")
    c = _client(server)
    _infer(c, GOOD, True)
    c.close()
    m = _metrics(server)
    assert m['st_serve_requests_total{model="m"}'] == before['st_serve_requests_total{model="m"}'] + 2
    assert (m['st_serve_request_failures_total{model="m",reason="bad_request"}']
            == before['st_serve_request_failures_total{model="m",reason="bad_request"}'] + 1)
    buckets = [v for k, v in m.items() if k.startswith('st_serve_request_duration_seconds_bucket{model="m"')]
    assert buckets == sorted(buckets) and buckets[-1] == m['st_serve_request_duration_seconds_count{model="m"}']
    assert m['st_serve_queue_depth{model="m"}'] == 0


def test_cli_serve_answers_then_stops_on_sigterm(onnx_artifact):
    p = subprocess.Popen([sys.executable, "-m", "st_deploy", "serve", str(onnx_artifact), "--port", "0",
                          "--name", "cli", "--instances", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        line = p.stdout.readline()  # the one line it prints once it listens
        m = re.search(r"at http://127\.0\.0\.1:(\d+)/v2/models/cli", line)
        assert m, (line, p.stderr.read() if p.poll() is not None else "")
        c = tritonhttp.InferenceServerClient(f"127.0.0.1:{m.group(1)}", connection_timeout=30, network_timeout=30)
        assert c.is_model_ready("cli")
        assert _infer(c, GOOD, True, "cli").as_numpy("classifier.1").shape == (1, 10)
        c.close()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_cli_serve_bad_artifact_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "st_deploy", "serve", str(tmp_path), "--port", "0"],
                       capture_output=True, text=True, timeout=120, env={**os.environ})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no manifest.json" in r.stderr
