"""Random small SuperTickets nets: every pass keeps the outputs, and selection is honoured."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from st_deploy.compact import compact, lower
from st_deploy.compact.pipeline import run_passes
from st_deploy.graph.validate import validate_graph_dict

from tests.compact.compact_builders import assert_close, random_supernet_ticket, run_graph

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _input(seed: int, h: int, w: int) -> torch.Tensor:
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), task=st.sampled_from(["classification", "segmentation"]),
       searched=st.booleans(), density=st.sampled_from([0.15, 0.5, 0.9]),
       size=st.sampled_from([(32, 32), (36, 44), (40, 24)]))
def test_every_pass_is_exact(seed, task, searched, density, size):
    ticket = random_supernet_ticket(seed, task, searched, density)
    x = _input(seed, *size)
    ref = ticket(x)
    graph = lower(ticket)
    assert_close(run_graph(graph, x), ref, "lowered")

    def check(name, g):
        validate_graph_dict(g.to_dict())
        assert_close(run_graph(g, x), ref, f"after {name}")

    run_passes(graph, 0.0, after_pass=check)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), searched=st.booleans())
def test_selection_is_honoured(seed, searched):
    """A branch keeps at most its selected channels; one with none selected is gone.

    Without an expand conv (expand_ratio 1) the depthwise conv reads the block input, whose
    channels stay live, so a partly unselected branch keeps its width (exactly, as constants
    folded away downstream); a wholly unselected one still goes. One known slack: a conv
    whose weights are all zero but whose constant feeds a padded kxk conv keeps one input
    channel as its spatial-shape source, which can keep a one-channel chain upstream.
    """
    ticket = random_supernet_ticket(seed, "classification", searched, density=0.6)
    c = compact(ticket)
    mods = dict(ticket.module.named_modules())
    for b in c.report["blocks"]:
        blk = mods[b["block"]]
        dw = 1 if blk.expand else 0
        for op, h in zip(blk.ops, b["hidden_after"]):
            bn = op[dw][1]
            selected = int((bn.weight * bn.weight_mask != 0).sum())
            if blk.expand or selected == 0:
                assert h <= max(selected, 1), b["block"]
        if all(h == 0 for h in b["hidden_after"]) and len(blk.ops):
            assert b["removed"]
    assert c.report["error"]["max_rel"] <= 1e-5


@pytest.mark.parametrize("seed", [3, 11])
def test_threshold_zero_changes_no_value(seed):
    """select at threshold 0 only marks what is already constant."""
    ticket = random_supernet_ticket(seed)
    x = _input(seed, 32, 32)
    graph = lower(ticket)
    seen = []
    run_passes(graph, 0.0, after_pass=lambda name, g: seen.append(name) or
               (name == "select" and assert_close(run_graph(g, x), ticket(x), "select")))
    assert seen[0] == "select" and seen[-1] == "finalize_masks"
