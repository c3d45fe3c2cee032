"""Small model zoo of our own definitions, for tests and examples of generic masked tickets.

Standard torch layers only (what a user's pruned model looks like): Conv2d, BatchNorm2d,
ReLU/ReLU6, residual adds, global pooling, Linear. Factories take keyword arguments so a
ticket can record them and `--model st_deploy.models.zoo:resnet18_like` can rebuild them.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inp, oup, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(oup)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(oup, oup, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(oup)
        self.downsample = None
        if stride != 1 or inp != oup:
            self.downsample = nn.Sequential(nn.Conv2d(inp, oup, 1, stride, bias=False), nn.BatchNorm2d(oup))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Like(nn.Module):
    """ResNet-18 layout (2-2-2-2 basic blocks) with a configurable width."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.conv1 = nn.Conv2d(3, width, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        layers, inp = [], width
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(inp, w, stride), BasicBlock(w, w, 1)))
            inp = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inp, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidualV2(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), nn.ReLU6(),
                   nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and inp == oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Like(nn.Module):
    """MobileNetV2 layout (t, c, n, s table) with a width multiplier."""

    SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 10, width_mult: float = 0.5, last_channel: int = 320) -> None:
        super().__init__()

        def ch(c: float) -> int:
            return max(8, int(c * width_mult + 4) // 8 * 8)

        inp = ch(32)
        features: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, inp, 3, 2, 1, bias=False),
                                                   nn.BatchNorm2d(inp), nn.ReLU6())]
        for t, c, n, s in self.SETTING:
            oup = ch(c)
            for i in range(n):
                features.append(InvertedResidualV2(inp, oup, s if i == 0 else 1, t))
                inp = oup
        features.append(nn.Sequential(nn.Conv2d(inp, last_channel, 1, bias=False),
                                      nn.BatchNorm2d(last_channel), nn.ReLU6()))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return self.classifier(x)


def resnet18_like(num_classes: int = 10, width: int = 16) -> nn.Module:
    return ResNet18Like(num_classes=num_classes, width=width)


def mobilenetv2_like(num_classes: int = 10, width_mult: float = 0.5) -> nn.Module:
    return MobileNetV2Like(num_classes=num_classes, width_mult=width_mult)


ZOO: dict[str, Callable[..., nn.Module]] = {
    "resnet18_like": resnet18_like,
    "mobilenetv2_like": mobilenetv2_like,
}
