"""Channel padding for ORT's blocked convs (st_deploy.plan.padding): exact, and only where safe."""

import torch
from torch import nn

from st_deploy.compact import compact
from st_deploy.graph.module import GraphModule
from st_deploy.graph.shapes import channel_counts
from st_deploy.plan.padding import pad_channels
from st_deploy.ticket import Ticket


class Chain(nn.Module):
    def __init__(self, concat: bool = False) -> None:
        super().__init__()
        self.concat = concat
        self.a = nn.Conv2d(3, 32, 3, padding=1)
        self.bn = nn.BatchNorm2d(32)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.b = nn.Conv2d(64 if concat else 32, 8, 1)

    def forward(self, x):
        y = self.dw(torch.relu(self.bn(self.a(x))))
        return self.b(torch.cat([y, y], 1) if self.concat else torch.nn.functional.hardsigmoid(y) * y)


def _compacted(concat: bool):
    torch.manual_seed(0)
    m = Chain(concat).eval()
    with torch.no_grad():
        m.a.weight[:7] = 0  # seven dead filters: 25 channels left after compaction
        m.a.bias[:7] = 0
        m.bn.bias[:7] = 0
        m.bn.running_mean[:7] = 0
    t = Ticket(module=m, family="masked", config={}, task="classification", default_input_shape=(1, 3, 16, 16))
    return m, compact(t).graph


def test_odd_counts_are_padded_exactly():
    model, graph = _compacted(concat=False)
    assert channel_counts(graph)["dw"] == 25
    padded, decisions = pad_channels(graph)
    counts = channel_counts(padded)
    assert counts["dw"] == 32 and counts["a"] == 32
    assert {d["tensor"] for d in decisions} >= {"a", "dw"}
    assert all(d["channels"] == 25 and d["padded_to"] == 32 for d in decisions)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(GraphModule(padded)(x), model(x), rtol=1e-5, atol=1e-6)


def test_channels_that_a_concat_reads_stay_as_they_are():
    _, graph = _compacted(concat=True)
    padded, decisions = pad_channels(graph)
    assert decisions == [] and padded is graph
