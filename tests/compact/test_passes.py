"""Targeted cases for the passes on hand-built graphs (FORMAT.md's constant semantics)."""

import torch

from st_deploy.compact.dead_channels import remove_dead_channels
from st_deploy.compact.fold_bn import fold_batch_norms
from st_deploy.compact.fold_const import fold_constants
from st_deploy.graph.build import GraphBuilder
from st_deploy.graph.validate import validate_graph_dict

from tests.compact.compact_builders import assert_close, run_graph

G = torch.Generator().manual_seed(0)


def _rand(*shape):
    return torch.randn(*shape, generator=G)


def _graph(shift: float, padding: int, k: int = 3):
    """conv -> BN whose channel 0 has scale 0 (constant `shift`) -> kxk depthwise -> 1x1."""
    b = GraphBuilder(["input"])
    x = b.conv2d("a", "input", _rand(4, 3, 1, 1), None, 1, 0, 1)
    scale = torch.tensor([0.0, 1.0, 2.0, 0.5])
    x = b.scale_shift("bn", x, torch.tensor([shift, 0.1, 0.2, 0.3]), scale)
    x = b.conv2d("dw", x, _rand(4, 1, k, k), None, 1, padding, 4)
    x = b.conv2d("pw", x, _rand(5, 4, 1, 1), _rand(5), 1, 0, 1)
    return b.build([x])


def _run_all(g, x):
    ref = run_graph(g, x)
    for f in (fold_constants, remove_dead_channels, fold_batch_norms):
        f(g)
        validate_graph_dict(g.to_dict())
        assert_close(run_graph(g, x), ref, f.__name__)
    return g


def test_nonzero_constant_through_padded_conv_is_kept():
    g = _run_all(_graph(0.7, padding=1), _rand(1, 3, 9, 9))
    assert g.node("dw").params["weight"].shape[0] == 4  # borders differ: not a constant


def test_zero_constant_through_padded_conv_is_removed():
    g = _run_all(_graph(0.0, padding=1), _rand(1, 3, 9, 9))
    assert g.node("dw").params["weight"].shape[0] == 3


def test_nonzero_constant_through_unpadded_conv_is_removed():
    g = _run_all(_graph(0.7, padding=0), _rand(1, 3, 9, 9))
    assert g.node("dw").params["weight"].shape[0] == 3


def test_grouped_conv_stays_valid():
    """A gcd-grouped residual conv reading a dead channel keeps its layout, exactly."""
    b = GraphBuilder(["input"])
    x = b.conv2d("a", "input", _rand(6, 3, 1, 1), None, 1, 0, 1)
    w = _rand(4, 3, 1, 1)
    w[:, 0] = 0  # res leaves channel 0 of group 0 unread; its layout must survive anyway
    r = b.conv2d("res", x, w, None, 1, 0, 2)
    t = b.conv2d("t", x, _rand(4, 6, 1, 1), None, 1, 0, 1)
    g = b.build([b.add("sum", [r, t])])
    g = _run_all(g, _rand(1, 3, 5, 5))
    assert g.node("res").attrs["groups"] == 2 and g.node("a").params["weight"].shape[0] == 6


def test_fold_bn_keeps_masked_weights_zero():
    b = GraphBuilder(["input"])
    mask = (torch.rand(4, 3, 3, 3, generator=G) > 0.5).float()
    x = b.conv2d("c", "input", _rand(4, 3, 3, 3), None, 1, 1, 1, mask)
    x = b.batch_norm("bn", x, _rand(4), _rand(4), _rand(4), torch.rand(4, generator=G) + 0.5, 1e-5)
    g = b.build([b.act("r", x, "relu6")])
    _run_all(g, _rand(2, 3, 6, 6))
    c = g.node("c")
    assert len(g.nodes) == 1 and c.attrs["act"] == "relu6"
    assert torch.equal(c.params["weight"][mask == 0], torch.zeros(int((mask == 0).sum())))
