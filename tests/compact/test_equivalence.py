"""The optimised passes give exactly what the straightforward fixed-point versions give.

naive_passes.py keeps the passes as first written (rescanning the graph after every
rewrite); here both run on the same graphs and must agree node for node and bit for bit:
same node list (names, ops, inputs, attrs), same tensors (dtype, shape, strides, values),
same pass log.
"""

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from st_deploy.compact import lower
from st_deploy.compact.dead_channels import remove_dead_channels
from st_deploy.compact.fold_bn import fold_batch_norms
from st_deploy.compact.fold_const import fold_constants
from st_deploy.compact.pipeline import run_passes
from st_deploy.graph.build import GraphBuilder
from st_deploy.graph.ir import Graph
from st_deploy.models.supertickets import HighResolutionNet
from st_deploy.ticket import Ticket

import tests.compact.naive_passes as naive
from tests.compact.compact_builders import random_arch, random_params, random_supernet_ticket, randomise_supernet, zoo_ticket


def differences(a, b, path="graph") -> list[str]:
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor):
            return [f"{path}: tensor vs {type(b).__name__}"]
        if (a.dtype, a.shape, a.stride()) != (b.dtype, b.shape, b.stride()):
            return [f"{path}: {a.dtype} {tuple(a.shape)} {a.stride()} vs {b.dtype} {tuple(b.shape)} {b.stride()}"]
        # Bitwise: equal bytes (tells -0.0 from 0.0; NaN never occurs in params).
        if not torch.equal(a.contiguous().view(-1).view(torch.uint8), b.contiguous().view(-1).view(torch.uint8)):
            return [f"{path}: values differ"]
        return []
    if isinstance(a, dict):
        if not isinstance(b, dict) or list(a) != list(b):
            return [f"{path}: keys {list(a)} vs {list(b) if isinstance(b, dict) else b!r}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b) if isinstance(b, (list, tuple)) else b!r} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if type(a) is type(b) and a == b else [f"{path}: {a!r:.80} vs {b!r:.80}"]


def assert_identical(g: Graph, ref: Graph, what: str) -> None:
    diff = differences(g.to_dict(), ref.to_dict())
    assert not diff, f"{what}: {len(diff)} differences, first: {diff[:5]}"


def mid_supernet_ticket(seed: int, task: str = "classification", searched: bool = False) -> Ticket:
    """A few hundred nodes: three stages of up to three branches, wider than the property nets."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    params = random_params(rng, task)
    params.update(input_channel=[8, 16], last_channel=32, expand_ratio=rng.choice([2, 3]),
                  kernel_sizes=[3, 5, 7], head_channels=[16, 24, 32],
                  inverted_residual_setting=[[1, [2], [16]], [2, [2, 2], [16, 24]],
                                             [3, [2, 2, 2], [16, 24, 32]]])
    model = HighResolutionNet(params, random_arch(rng, params, searched))
    randomise_supernet(model, rng, gen, density=0.5)
    return Ticket(module=model, family="supertickets", config={"model_kwparams": params}, task=task,
                  default_input_shape=(1, 3, 64, 64), name=f"mid-{seed}")


def _compare_pipelines(graph: Graph, threshold: float, what: str) -> Graph:
    src = graph.clone()
    fast, log = run_passes(graph, threshold)
    ref, ref_log = naive.naive_run_passes(graph, threshold)
    assert_identical(fast, ref, what)
    assert vars(log) == vars(ref_log), what
    assert_identical(graph, src, f"{what}: input graph changed")
    theirs = {id(v) for n in graph.nodes for v in n.params.values()}
    assert not any(id(v) in theirs for n in fast.nodes for v in n.params.values()), \
        f"{what}: the result shares tensors with the input"
    return fast


@pytest.mark.parametrize("threshold", [0.0, 0.25])
@pytest.mark.parametrize("seed,task,searched", [(0, "classification", False), (1, "segmentation", True)])
def test_mid_supernet_matches_naive(seed, task, searched, threshold):
    ticket = mid_supernet_ticket(seed, task, searched)
    graph = lower(ticket)
    assert len(graph.nodes) > 300
    fast = _compare_pipelines(graph, threshold, f"mid-{seed} {task} t={threshold}")
    assert len(fast.nodes) < len(graph.nodes)


@pytest.mark.parametrize("factory,kwargs", [("resnet18_like", {"width": 8}),
                                            ("mobilenetv2_like", {"width_mult": 0.35})])
def test_zoo_matches_naive(factory, kwargs):
    graph = lower(zoo_ticket(factory, 2, 0.5, 0.4, **kwargs))
    _compare_pipelines(graph, 0.0, factory)


PASSES = {"fold_const": (fold_constants, naive.fold_constants),
          "dead_channels": (remove_dead_channels, naive.remove_dead_channels),
          "fold_bn": (fold_batch_norms, naive.fold_batch_norms)}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), task=st.sampled_from(["classification", "segmentation"]),
       searched=st.booleans(), density=st.sampled_from([0.15, 0.5, 0.9]), threshold=st.sampled_from([0.0, 0.3]))
def test_each_pass_matches_naive(seed, task, searched, density, threshold):
    """Every graph the naive pipeline passes through, fed to each optimised pass on its own."""
    states = []

    def record(name, g):
        states.append((name, g.clone()))

    graph = lower(random_supernet_ticket(seed, task, searched, density))
    naive.naive_run_passes(graph, threshold, after_pass=record)
    for (_, g), (name, ref) in zip(states, states[1:]):
        if name not in PASSES:
            continue
        fast, slow = PASSES[name]
        a, b = g.clone(), g.clone()
        assert fast(a) == slow(b), name
        assert_identical(a, b, name)
        assert_identical(a, ref, name)


def _rand(gen, *shape):
    return torch.randn(*shape, generator=gen)


def _bn(b, gen, name, x, c):
    return b.batch_norm(name, x, _rand(gen, c), _rand(gen, c), _rand(gen, c), torch.rand(c, generator=gen) + 0.5, 1e-5)


def _folding_graph(with_dead: bool) -> Graph:
    gen = torch.Generator().manual_seed(0)
    b = GraphBuilder(["input"])
    x = b.conv2d("a", "input", _rand(gen, 4, 3, 1, 1), None, 1, 0, 1)
    y = _bn(b, gen, "bn", x, 4)
    if with_dead:
        b.act("dead", x, "relu")  # reads a: bn cannot fold into a while it is there
    z = _bn(b, gen, "bn2", b.conv2d("c", y, _rand(gen, 5, 4, 1, 1), None, 1, 0, 1), 5)
    u = b.conv2d("d", y, _rand(gen, 5, 4, 1, 1), None, 1, 0, 1)
    w = b.conv2d("e", y, _rand(gen, 5, 4, 1, 1), None, 1, 0, 1)
    s = _bn(b, gen, "bn3", b.add("s", [z, u, w]), 5)
    t = b.add("t", [b.add("s2", [s, u]), b.act("r", u, "relu6")])
    return b.build([b.act("out", t, "relu")])


@pytest.mark.parametrize("with_dead", [False, True])
def test_fold_bn_matches_naive(with_dead):
    """Dead readers count (as in Graph.consumers) until the first fold's remove_unused."""
    g = _folding_graph(with_dead)
    a, ref = g.clone(), g.clone()
    assert fold_batch_norms(a) == naive.fold_batch_norms(ref) > 0
    assert_identical(a, ref, "fold_bn")


def test_fold_bn_nothing_to_fold_keeps_dead_nodes():
    gen = torch.Generator().manual_seed(1)
    b = GraphBuilder(["input"])
    x = b.conv2d("a", "input", _rand(gen, 4, 3, 1, 1), None, 1, 0, 1)
    b.act("dead", x, "relu")
    g = b.build([x])
    a, ref = g.clone(), g.clone()
    assert fold_batch_norms(a) == naive.fold_batch_norms(ref) == 0
    assert_identical(a, ref, "fold_bn")
    assert [n.name for n in a.nodes] == ["a", "dead"]
