"""Random tickets for the compaction tests: small SuperTickets nets and masked zoo models.

Everything is drawn from one seed, so a failing hypothesis example replays exactly.
"""

from __future__ import annotations

import random
import re
from typing import Any

import torch
from torch import nn

from st_deploy.graph.ir import Graph
from st_deploy.graph.module import GraphModule
from st_deploy.models.supertickets import HighResolutionNet, MaskedBatchNorm2d, MaskedConv2d
from st_deploy.ticket import Ticket


def random_params(rng: random.Random, task: str) -> dict[str, Any]:
    n_stages = rng.randint(1, 3)
    setting, branches = [], 1
    for _ in range(n_stages):
        branches = min(3, branches + rng.randint(0, 1))
        setting.append([branches, [rng.randint(0, 2) for _ in range(branches)],
                        [rng.choice([4, 6, 8]) for _ in range(branches)]])
    head = None if rng.random() < 0.3 else [rng.choice([4, 6, 8]) for _ in range(branches)]
    return {
        "active_fn": rng.choice(["nn.ReLU", "nn.ReLU6", "nn.Swish", "nn.HSwish"]),
        "num_classes": rng.randint(2, 5), "input_stride": 4, "bn_momentum": 0.1,
        "bn_epsilon": rng.choice([1e-3, 1e-5]), "input_channel": [rng.choice([4, 8]), rng.choice([4, 6, 8])],
        "last_channel": rng.choice([8, 12, 16]), "expand_ratio": rng.choice([1, 2, 3]),
        "kernel_sizes": sorted(rng.sample([3, 5, 7], rng.randint(1, 3))),
        "inverted_residual_setting": setting, "head_channels": head, "task": task,
    }


def random_arch(rng: random.Random, params: dict[str, Any], searched: bool):
    """Supernet arch (every kernel, hidden = inp * ratio) or a random searched one."""
    def arch(prefix: str, inp: int, oup: int) -> tuple[list[int], list[int]]:
        ks = list(params["kernel_sizes"])
        if searched:
            ks = [k for k in ks if rng.random() < 0.7]
        if params["expand_ratio"] == 1:
            return ks, [inp] * len(ks)
        return ks, [rng.randint(1, 3 * inp) if searched else inp * params["expand_ratio"] for _ in ks]
    return arch


def randomise_supernet(model: HighResolutionNet, rng: random.Random, gen: torch.Generator,
                       density: float) -> None:
    """Kaiming weights, random masks (incl. all-zero filters and layers), calibrated-ish BN
    statistics, and a random selection: zero gamma with nonzero beta on selection BNs, on
    whole branches, and now and then on every branch of a block."""
    dw_index = 1 if model_expand(model) else 0
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)
            if isinstance(m, MaskedConv2d):
                mask = (torch.rand(m.weight.shape, generator=gen) < density).float()
                rows = torch.rand(m.weight.shape[0], generator=gen) < rng.choice([0.0, 0.1, 0.3])
                mask[rows] = 0
                if rng.random() < 0.03:
                    mask.zero_()
                m.weight_mask.copy_(mask)
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                if isinstance(m, MaskedBatchNorm2d) and rng.random() < 0.1:
                    m.weight_mask.copy_((torch.rand(c, generator=gen) > 0.2).float())
                if re.search(rf"\.ops\.\d+\.{dw_index}\.1$", name):  # the selection BN
                    p = rng.choice([0.0, 0.3, 0.6, 1.0])
                    off = torch.rand(c, generator=gen) < p
                    m.weight[off] = 0.0
        for prefix in model.block_names:
            blk = dict(model.named_modules())[prefix]
            if len(blk.ops) and rng.random() < 0.15:  # a dead block: every branch unselected
                for op in blk.ops:
                    op[dw_index][1].weight.zero_()
    model.eval()


def model_expand(model: HighResolutionNet) -> bool:
    for m in model.modules():
        if hasattr(m, "expand"):
            return m.expand
    return True


def random_supernet_ticket(seed: int, task: str = "classification", searched: bool = False,
                           density: float = 0.5) -> Ticket:
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    params = random_params(rng, task)
    model = HighResolutionNet(params, random_arch(rng, params, searched))
    randomise_supernet(model, rng, gen, density)
    return Ticket(module=model, family="supertickets", config={"model_kwparams": params}, task=task,
                  default_input_shape=(1, 3, 64, 64), name=f"random-{seed}")


def mask_generic(model: nn.Module, gen: torch.Generator, density: float, dead_filters: float) -> nn.Module:
    """The generic loader's contract: weight_mask buffers, weights already multiplied."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(c, generator=gen) - 0.5)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                mask = (torch.rand(m.weight.shape, generator=gen) < density).float()
                mask[torch.rand(m.weight.shape[0], generator=gen) < dead_filters] = 0
                m.weight.mul_(mask)
                m.register_buffer("weight_mask", mask)
    return model.eval()


def zoo_ticket(factory: str, seed: int, density: float = 0.4, dead_filters: float = 0.25,
               **kwargs: Any) -> Ticket:
    from st_deploy.models import zoo
    torch.manual_seed(seed)
    model = mask_generic(getattr(zoo, factory)(**kwargs), torch.Generator().manual_seed(seed), density,
                         dead_filters)
    return Ticket(module=model, family="masked",
                  config={"model": f"st_deploy.models.zoo:{factory}", "kwargs": kwargs},
                  task="classification", default_input_shape=(1, 3, 224, 224), name=factory)


def run_graph(graph: Graph, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return GraphModule(graph)(x)


def assert_close(y: torch.Tensor, ref: torch.Tensor, what: str, rel: float = 1e-5) -> None:
    assert y.shape == ref.shape, f"{what}: shape {tuple(y.shape)} != {tuple(ref.shape)}"
    err = float((y - ref).abs().max())
    scale = float(ref.abs().max())
    assert err <= rel * scale + 1e-7, f"{what}: max abs error {err:.3g} > {rel} * max|y| ({scale:.3g})"
