"""The built-in example ticket looks like a trained SuperTickets ticket."""

from __future__ import annotations

import hashlib

import torch

from st_deploy import load_ticket
from st_deploy.example import IMAGENET_KWPARAMS, build_example
from st_deploy.inspect import inspect_ticket


def test_example_structure(example_ticket):
    ticket = load_ticket(example_ticket)
    assert ticket.config["model_kwparams"]["inverted_residual_setting"] == IMAGENET_KWPARAMS["inverted_residual_setting"]
    assert ticket.config["variant"] == "supernet"
    params = sum(p.numel() for n, p in ticket.module.named_parameters() if ".bns." not in n)
    assert 13.0e6 < params < 13.5e6  # the paper's supernet: 13.34 M
    report = inspect_ticket(ticket, input_shape=(1, 3, 64, 64))
    by_op: dict[str, list[int]] = {}
    for layer in report["layers"]:
        kind = "1x1" if layer["op"] in ("conv1x1", "gconv1x1") else layer["op"]
        acc = by_op.setdefault(kind, [0, 0])
        acc[0] += layer["params"]
        acc[1] += layer["nonzero"]
    sparsity = {k: 1 - nz / n for k, (n, nz) in by_op.items()}
    assert 0.90 < sparsity["1x1"] < 0.96
    for dw in ("dw3x3", "dw5x5", "dw7x7"):
        assert 0.30 < sparsity[dw] < 0.80
    assert report["totals"]["unselected_channels"] > 0
    # Unselected channels keep a nonzero beta: exact compaction must fold them.
    bn = dict(ticket.module.named_modules())["features.1.branches.0.0.ops.0.1.1"]
    assert torch.all(bn.bias != 0)


def test_example_is_deterministic_by_seed():
    def digest(seed: int) -> str:
        sd = build_example(seed=seed, kwparams=_tiny()).state_dict()
        h = hashlib.sha256()
        for k in sorted(sd):
            h.update(sd[k].numpy().tobytes())
        return h.hexdigest()
    assert digest(3) == digest(3)
    assert digest(3) != digest(4)


def _tiny() -> dict:
    return {**IMAGENET_KWPARAMS, "input_channel": [8, 8], "inverted_residual_setting": [[1, [1], [8]], [2, [1, 1], [8, 16]]],
            "head_channels": [8, 16], "last_channel": 32, "num_classes": 10}
