"""Tickets the tests build in memory."""

from __future__ import annotations

from typing import Any

import torch

from st_deploy.ticket import Ticket


def masked_zoo_ticket(factory: str, seed: int = 0, density: float = 0.3, **kwargs: Any) -> Ticket:
    """A zoo model with random BN statistics and unstructured masks (weight_mask buffers)."""
    from st_deploy.models import zoo
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = getattr(zoo, factory)(**kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                mask = (torch.rand(m.weight.shape, generator=g) < density).float()
                m.weight.mul_(mask)
                m.register_buffer("weight_mask", mask)
    return Ticket(module=model.eval(), family="masked", config={"model": f"st_deploy.models.zoo:{factory}"},
                  task="classification", default_input_shape=(1, 3, 64, 64), name=factory)
