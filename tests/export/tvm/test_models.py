"""Whole models: masked zoo tickets and the shared SuperTickets samples, exported for llvm."""

from __future__ import annotations

import pytest
import torch

from tests.artifacts import REL, check_against, manifest
from tests.tickets import masked_zoo_ticket
from st_deploy.export.tvm import export_tvm


@pytest.mark.parametrize("factory,kwargs", [("resnet18_like", {"width": 8}),
                                            ("mobilenetv2_like", {"width_mult": 0.35})])
def test_zoo_ticket_matches(tmp_path, factory, kwargs):
    ticket = masked_zoo_ticket(factory, **kwargs)
    out = export_tvm(ticket, "llvm", tmp_path / factory)
    m = manifest(out)
    assert m["source"]["name"] == factory and m["fidelity"]["files"]["model.so"]["rel"] <= REL
    assert any(lp["runs_as"] != "dense" for lp in m["plan"]["layers"])
    assert check_against(out, ticket.module, (1, 3, 64, 64)) <= REL


@pytest.mark.parametrize("name", ["cls_mini_searched", "seg_mini_supernet"])
def test_shared_sample_matches(samples, tmp_path, name):
    """At the sample's own input: the artifact matches the ticket and the output the
    SuperTickets code recorded (x, y in X.io.pt)."""
    import numpy as np

    from st_deploy.loaders import load_ticket
    from st_deploy.runtime.runner import load
    ticket = load_ticket(samples / f"{name}.state_dict")
    io = torch.load(samples / f"{name}.io.pt", map_location="cpu", weights_only=True)
    shape = tuple(io["x"].shape)
    out = export_tvm(ticket, "llvm", tmp_path / name, input_shape=shape)
    assert manifest(out)["fidelity"]["files"]["model.so"]["rel"] <= REL
    assert check_against(out, ticket.module, shape) <= REL
    got, want = load(out, threads=1).run(io["x"]), io["y"].numpy()
    assert float(np.abs(got - want).max() / np.abs(want).max()) <= REL
