"""Compaction of the shared SuperTickets samples (written by the SuperTickets code)."""

import json

import pytest
import torch

from st_deploy.compact import compact, lower
from st_deploy.graph.ir import Graph
from st_deploy.loaders.supertickets import load_supertickets
from st_deploy.models.supertickets import MaskedConv2d

from tests.compact.compact_builders import assert_close, run_graph

SAMPLES = ("cls_mini_supernet", "cls_mini_searched", "seg_mini_supernet")


def _load(samples_dir, name):
    io = torch.load(samples_dir / f"{name}.io.pt", weights_only=True)
    return load_supertickets(samples_dir / f"{name}.state_dict"), io


@pytest.mark.parametrize("name", SAMPLES)
def test_lowering_reproduces_sample(samples_dir, name):
    ticket, io = _load(samples_dir, name)
    assert_close(run_graph(lower(ticket), io["x"]), io["y"], f"{name} lowered")


@pytest.mark.parametrize("name", SAMPLES)
def test_compacted_matches_sample(samples_dir, name):
    ticket, io = _load(samples_dir, name)
    c = compact(ticket)
    with torch.no_grad():
        y = c.ticket.module(io["x"])
    assert_close(y, io["y"], f"{name} compacted")
    r = json.loads(json.dumps(c.report))  # JSON-serialisable
    assert r["error"]["max_rel"] <= 1e-5
    assert r["params"]["after"]["dense"] < r["params"]["before"]["dense"]
    assert r["flops"]["after"]["nonzero"] < r["flops"]["before"]["nonzero"]
    assert c.ticket.family == "compact" and c.ticket.sha256 == ticket.sha256
    assert c.ticket.config == {"graph_source_family": "supertickets", "threshold": 0.0}
    Graph.from_dict(c.graph.to_dict())  # a valid, serialisable graph
    for n in c.graph.nodes:
        if n.op in ("conv2d", "linear"):
            assert torch.equal(n.params["weight"], n.params["weight"] * n.params["mask"])


@pytest.mark.parametrize("name", ("cls_mini_supernet", "seg_mini_supernet"))
def test_beats_supertickets_own_compaction(samples_dir, name):
    ticket, io = _load(samples_dir, name)
    scale = float(io["y"].abs().max())
    theirs = float((io["y_seed_compacted"] - io["y"]).abs().max()) / scale
    with torch.no_grad():
        ours = float((compact(ticket).ticket.module(io["x"]) - io["y"]).abs().max()) / scale
    assert theirs > 0.2 and ours <= 1e-5, (theirs, ours)


def _unmask(ticket):
    """The same selection without unstructured masks: every weight live and nonzero."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in ticket.module.modules():
            if isinstance(m, MaskedConv2d):
                m.weight_mask.fill_(1)
                m.weight.copy_(torch.where(m.weight == 0, torch.randn(m.weight.shape, generator=gen), m.weight))
    return ticket


def test_supernet_compacts_to_searched_structure(samples_dir):
    """Selection alone (masks neutralised) gives exactly the searched net's branches and widths."""
    ticket, _ = _load(samples_dir, "cls_mini_supernet")
    c = compact(_unmask(ticket))
    searched = json.loads((samples_dir / "cls_mini_searched.checkpoint.json").read_text())
    blocks = c.report["blocks"]
    assert len(blocks) == len(searched)
    for b, entry in zip(blocks, searched):
        got = (b["kernel_sizes_after"], [h for h in b["hidden_after"] if h])
        assert got == (entry[3], entry[4]), b["block"]
    # Weight count derived independently: the searched net as the loader builds it.
    ref = load_supertickets(samples_dir / "cls_mini_searched.state_dict").module
    expected = sum(m.weight.numel() for m in ref.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    got = sum(n.params["weight"].numel() for n in c.graph.nodes if n.op in ("conv2d", "linear"))
    assert got == expected
    assert c.report["error"]["max_rel"] <= 1e-5


def test_masks_remove_more_than_selection(samples_dir):
    """With its masks, each branch keeps at most its selected channels (dead filters go too)."""
    ticket, _ = _load(samples_dir, "cls_mini_supernet")
    searched = json.loads((samples_dir / "cls_mini_searched.checkpoint.json").read_text())
    blocks = compact(ticket).report["blocks"]
    for b, entry in zip(blocks, searched):
        selected = dict(zip(entry[3], entry[4]))
        for k, h in zip(b["kernel_sizes"], b["hidden_after"]):
            assert h <= selected.get(k, 0), (b["block"], k)


def test_threshold_approximates_and_reports(samples_dir):
    ticket, io = _load(samples_dir, "cls_mini_supernet")
    exact = compact(ticket)
    approx = compact(ticket, threshold=0.6)  # gammas of the sample lie in [0.5, 1.5]
    assert approx.report["passes"]["unselected_channels"] > exact.report["passes"]["unselected_channels"]
    assert approx.report["params"]["after"]["dense"] < exact.report["params"]["after"]["dense"]
    assert not approx.report["exact"]
    with torch.no_grad():
        err = float((approx.ticket.module(io["x"]) - io["y"]).abs().max())
    assert err > 1e-4 and approx.report["error"]["max_abs"] > 1e-4
