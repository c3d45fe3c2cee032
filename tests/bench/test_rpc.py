"""Edge benchmarking through TVM's RPC: a real server and tracker on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from st_deploy import DeployError, load_ticket
from st_deploy.bench.rpc import connect, remote_bench, server_command
from tests.conftest import import_test_extra, needs_samples
from tests.rpc_processes import free_port, spawn, start_tracker, stop, wait_listening

import_test_extra("tornado")  # the TVM RPC tracker
import_test_extra("cloudpickle")  # the TVM RPC server
pytestmark = [needs_samples, pytest.mark.slow]






@pytest.fixture(scope="module")
def artifact(samples, tmp_path_factory) -> tuple[Path, np.ndarray]:
    from st_deploy import export
    ticket = load_ticket(samples / "cls_mini_searched.state_dict")
    out = export(ticket, target="llvm", out=tmp_path_factory.mktemp("rpc") / "art", input_shape=(1, 3, 64, 64))
    from st_deploy.graph.fidelity import seeded_input
    with torch.no_grad():
        ref = ticket.module(torch.from_numpy(seeded_input((1, 3, 64, 64)))).numpy().astype(np.float64)
    return out, ref


def test_remote_benchmark_direct(artifact):
    folder, ref = artifact
    port = free_port()
    server = spawn(server_command("127.0.0.1", port))
    try:
        wait_listening(port, server)
        record = remote_bench(folder, connect(rpc=f"127.0.0.1:{port}"), repeat=5, reference=ref)
        assert record["n"] == 5 and record["p50_ms"] > 0 and record["min_ms"] <= record["p50_ms"]
        assert record["fidelity_max_rel"] <= 1e-5
    finally:
        stop(server)


def test_remote_benchmark_through_tracker(artifact):
    folder, ref = artifact
    tracker_port, server_port = free_port(), free_port()
    tracker = start_tracker(tracker_port)
    server = None
    try:
        wait_listening(tracker_port, tracker)
        server = spawn(server_command("127.0.0.1", server_port, tracker=f"127.0.0.1:{tracker_port}",
                                      key="st-test-board"))
        wait_listening(server_port, server)
        # The server registers with the tracker asynchronously after it listens.
        deadline = time.time() + 60
        while True:
            try:
                session = connect(tracker=f"127.0.0.1:{tracker_port}", key="st-test-board", session_timeout=60)
                break
            except DeployError:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        record = remote_bench(folder, session, repeat=5, reference=ref)
        assert record["n"] == 5 and record["fidelity_max_rel"] <= 1e-5
    finally:
        if server is not None:
            stop(server)
        stop(tracker)


def test_connection_errors_are_clear():
    with pytest.raises(DeployError, match="HOST:PORT"):
        connect(rpc="nohostport")
    with pytest.raises(DeployError, match="--key"):
        connect(tracker="127.0.0.1:1")
    with pytest.raises(DeployError, match="RPC connection failed"):
        connect(rpc=f"127.0.0.1:{free_port()}")
