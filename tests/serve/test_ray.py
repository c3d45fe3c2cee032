"""`st-deploy serve --ray`: the same app as a Ray Serve deployment (smoke test: a local Ray on
loopback, 2 replicas, tritonclient against it, every answer checked, a bad request refused)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.artifacts import inputs
from tests.conftest import import_test_extra

pytest.importorskip("ray.serve", reason='Ray Serve is optional: pip install "st-deploy[ray]"')
tritonhttp = import_test_extra("tritonclient.http")


@pytest.mark.slow
def test_ray_serve_two_replicas(onnx_artifact):
    import http.client

    import ray

    import st_deploy
    from st_deploy.serve.ray_app import RayServer
    reference = st_deploy.load(onnx_artifact, threads=1)
    xs = inputs(4, seed=30)
    refs = [reference.run(x) for x in xs]
    server = RayServer(onnx_artifact, name="r", replicas=2, port=0)
    try:
        problems: list[str] = []
        deadline = time.monotonic() + 120

        def client(k: int) -> None:
            c = tritonhttp.InferenceServerClient(f"127.0.0.1:{server.port}", connection_timeout=60,
                                                 network_timeout=60)
            for i in range(5):
                if time.monotonic() > deadline:
                    problems.append(f"client {k}: deadline passed")
                    break
                x = xs[(k + i) % len(xs)]
                inp = tritonhttp.InferInput("input", list(x.shape), "FP32")
                inp.set_data_from_numpy(x, binary_data=i % 2 == 0)
                outs = [tritonhttp.InferRequestedOutput("classifier.1", binary_data=i % 2 == 0)]
                y = c.infer("r", [inp], outputs=outs).as_numpy("classifier.1")
                if not np.allclose(y, refs[(k + i) % len(xs)], rtol=1e-5, atol=1e-6):
                    problems.append(f"client {k} request {i}: wrong answer")
            c.close()

        c = tritonhttp.InferenceServerClient(f"127.0.0.1:{server.port}")
        assert c.is_server_live() and c.is_model_ready("r")
        assert c.get_model_metadata("r")["inputs"][0]["shape"] == [-1, 3, 32, 32]
        ts = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(150)
        assert not any(t.is_alive() for t in ts) and problems == []
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("POST", "/v2/models/r/infer", body=b'{"inputs": [{"name": "x"}]}',
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 400 and "unknown input 'x'" in json.loads(r.read())["error"]
        conn.close()
    finally:
        server.stop()
    assert not ray.is_initialized()


def test_ray_options_need_ray(onnx_artifact):
    r = subprocess.run([sys.executable, "-m", "st_deploy", "serve", str(onnx_artifact), "--replicas", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "need --ray" in r.stderr and r.stderr.count("\n") == 1
