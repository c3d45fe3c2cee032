"""Generic masked models (standard torch layers, traced with torch.fx)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from st_deploy.compact import compact, lower
from st_deploy.compact.pipeline import run_passes
from st_deploy.errors import DeployError
from st_deploy.ticket import Ticket

from tests.compact.compact_builders import assert_close, mask_generic, run_graph, zoo_ticket


@pytest.mark.parametrize("factory,kwargs", [("resnet18_like", {"width": 8}),
                                            ("mobilenetv2_like", {"width_mult": 0.35})])
@pytest.mark.parametrize("seed,density,dead", [(0, 0.5, 0.3), (1, 0.2, 0.0), (2, 0.9, 0.6)])
def test_zoo_compacts_exactly(factory, kwargs, seed, density, dead):
    ticket = zoo_ticket(factory, seed, density, dead, **kwargs)
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(seed))
    ref = ticket(x)
    graph = lower(ticket)
    assert_close(run_graph(graph, x), ref, "lowered")
    run_passes(graph, 0.0, after_pass=lambda name, g: assert_close(run_graph(g, x), ref, name))
    c = compact(ticket)
    with torch.no_grad():
        assert_close(c.ticket.module(x), ref, "compacted")
    if dead > 0:
        assert c.report["channels"]["removed"] > 0
        assert c.report["params"]["after"]["dense"] < c.report["params"]["before"]["dense"]
    assert c.report["input_shape"] == [1, 3, 224, 224]


class Functional(nn.Module):
    """Functional forms the FX lowering must accept."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, 1, 1)
        self.bn = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 8, 3, 2, 1, bias=False)
        self.c = nn.Conv2d(16, 6, 1)
        self.act = nn.Hardswish()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        y = F.relu(self.bn(self.a(x)))
        z = F.interpolate(F.silu(self.b(y)), scale_factor=2, mode="nearest")
        z += y
        z = torch.add(z, F.relu6(y))
        u = F.interpolate(z, scale_factor=2, mode="bilinear", align_corners=False)
        v = torch.cat([u, F.interpolate(y, scale_factor=2, mode="bilinear")], dim=1)
        w = self.act(self.c(v)).relu()
        h = torch.flatten(self.pool(w), 1) + w.mean((2, 3))
        return self.fc(self.drop(h))


def test_functional_forms():
    torch.manual_seed(0)
    m = mask_generic(Functional(), torch.Generator().manual_seed(0), 0.5, 0.3)
    t = Ticket(module=m, family="masked", config={}, task="classification", default_input_shape=(1, 3, 32, 32))
    x = torch.randn(2, 3, 16, 16)
    c = compact(t)
    with torch.no_grad():
        assert_close(c.ticket.module(x), m(x), "functional")


class Rolled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return torch.roll(self.pool(self.conv(x)), 1, 2)


def test_unknown_op_stays_opaque_and_is_named():
    t = Ticket(module=Rolled().eval(), family="masked", config={}, task="classification",
               default_input_shape=(1, 3, 32, 32))
    c = compact(t)
    assert c.report["opaque_ops"] == [{"node": "roll", "op": "roll"}]
    x = torch.randn(1, 3, 32, 32)
    assert_close(c.ticket.module(x), t(x), "opaque")


def test_bad_threshold():
    t = zoo_ticket("resnet18_like", 0, width=8)
    with pytest.raises(DeployError, match="threshold"):
        compact(t, threshold=-1.0)


def test_compact_is_idempotent():
    t = zoo_ticket("mobilenetv2_like", 3, width_mult=0.35)
    once = compact(t)
    twice = compact(once.ticket)
    assert twice.report["params"]["after"] == once.report["params"]["after"]
    assert twice.report["error"]["max_rel"] <= 1e-5
