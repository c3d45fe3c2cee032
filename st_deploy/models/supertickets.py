"""The SuperTickets / HR-NAS model family, written from the format spec (FORMAT.md).

Module names and parameter/buffer names match the SuperTickets code exactly, so a
SuperTickets state_dict loads with strict key checking. The per-block architecture
(kernel sizes and hidden channels of every branch) is supplied by a callback, so the
same classes build a supernet, a searched net, or whatever a state_dict holds.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# (prefix, inp, oup) -> (kernel_sizes, hidden_channels) for one InvertedResidual block.
BlockArch = Callable[[str, int, int], tuple[list[int], list[int]]]


class MaskedConv2d(nn.Conv2d):
    """Conv2d whose effective weight is weight * weight_mask (SuperTickets' masked_layers.Conv2d)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("weight_mask", torch.ones_like(self.weight))
        if self.bias is not None:
            self.register_buffer("bias_mask", torch.ones_like(self.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.bias_mask if self.bias is not None else None
        return self._conv_forward(x, self.weight * self.weight_mask, bias)


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with masked affine parameters (SuperTickets' masked_layers.BatchNorm2d)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.register_buffer("weight_mask", torch.ones_like(self.weight))
        self.register_buffer("bias_mask", torch.ones_like(self.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        momentum = self.momentum if self.momentum is not None else 0.0
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked += 1
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(
            x, self.running_mean, self.running_var,
            self.weight * self.weight_mask, self.bias * self.bias_mask,
            use_batch_stats, momentum, self.eps,
        )

    def effective_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight * self.weight_mask, self.bias * self.bias_mask


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class HSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3.0) / 6.0


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "nn.ReLU": nn.ReLU,
    "nn.ReLU6": nn.ReLU6,
    "nn.Swish": Swish,
    "nn.HSwish": HSwish,
}


class ConvBNReLU(nn.Sequential):
    """[0] conv (no bias, 'same' padding), [1] BN, [2] activation or identity."""

    def __init__(self, inp: int, oup: int, k: int = 3, stride: int = 1, groups: int = 1,
                 act: Callable[[], nn.Module] | None = None, bn_kwargs: dict | None = None) -> None:
        bn_kwargs = bn_kwargs or {}
        super().__init__(
            MaskedConv2d(inp, oup, k, stride, (k - 1) // 2, groups=groups, bias=False),
            MaskedBatchNorm2d(oup, **bn_kwargs),
            act() if act is not None else nn.Identity(),
        )


def residual_groups(inp: int, oup: int) -> int:
    return math.gcd(inp, oup)


class InvertedResidual(nn.Module):
    """Multi-kernel inverted residual block: a sum of expand -> depthwise -> project branches."""

    def __init__(self, inp: int, oup: int, stride: int, kernel_sizes: Sequence[int],
                 hiddens: Sequence[int], expand: bool, act: Callable[[], nn.Module],
                 bn_kwargs: dict) -> None:
        super().__init__()
        if len(kernel_sizes) != len(hiddens):
            raise ValueError("kernel_sizes and hidden channels differ in length")
        self.inp, self.oup, self.stride = inp, oup, stride
        self.kernel_sizes, self.hiddens, self.expand = list(kernel_sizes), list(hiddens), expand
        self.use_res = stride == 1 and inp == oup
        self.ops = nn.ModuleList()
        for k, h in zip(kernel_sizes, hiddens):
            layers: list[nn.Module] = []
            if expand:
                layers.append(ConvBNReLU(inp, h, 1, act=act, bn_kwargs=bn_kwargs))
            layers.append(ConvBNReLU(h, h, k, stride, groups=h, act=act, bn_kwargs=bn_kwargs))
            layers.append(MaskedConv2d(h, oup, 1, 1, 0, bias=False))
            self.ops.append(nn.Sequential(*layers))
        self.pw_bn = MaskedBatchNorm2d(oup, **bn_kwargs)
        if not self.use_res:
            self.residual = MaskedConv2d(inp, oup, 1, stride, 0, groups=residual_groups(inp, oup),
                                         bias=False)
        # BNs used only for distillation during training; kept so state_dicts load strictly.
        self.bns = nn.ModuleList(MaskedBatchNorm2d(h, **bn_kwargs) for h in hiddens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.use_res else self.residual(x)
        if len(self.ops) == 0:
            return shortcut
        t = sum([op(x) for op in self.ops])
        return shortcut + self.pw_bn(t)


class ParallelModule(nn.Module):
    def __init__(self, prefix: str, num_blocks: Sequence[int], channels: Sequence[int],
                 make_block: Callable[..., InvertedResidual]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[make_block(f"{prefix}.branches.{i}.{b}", c, c, 1) for b in range(n)])
            for i, (n, c) in enumerate(zip(num_blocks, channels))
        )

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [branch(x) for branch, x in zip(self.branches, xs)]


class FuseModule(nn.Module):
    """Exchange between resolutions; only neighbouring resolutions fuse (HR-NAS default)."""

    def __init__(self, prefix: str, in_channels: Sequence[int], out_channels: Sequence[int],
                 make_block: Callable[..., InvertedResidual], act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.in_branches, self.out_branches = len(in_channels), len(out_channels)
        self.adds_branches = self.out_branches > self.in_branches
        n_fused = self.in_branches if self.adds_branches else self.out_branches
        self.act = act()
        rows = []
        for i in range(n_fused):
            row: list[nn.Module | None] = []
            for j in range(self.in_branches):
                name = f"{prefix}.fuse_layers.{i}.{j}"
                if abs(i - j) > 1:
                    row.append(None)
                elif j > i:
                    row.append(nn.Sequential(
                        make_block(f"{name}.0", in_channels[j], out_channels[i], 1),
                        nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                elif j == i:
                    row.append(make_block(name, in_channels[j], out_channels[i], 1))
                else:
                    row.append(nn.Sequential(
                        make_block(f"{name}.0", in_channels[j], out_channels[i], 2 ** (i - j))))
            rows.append(nn.ModuleList(row))
        for b in range(n_fused, self.out_branches) if self.adds_branches else ():
            rows.append(nn.ModuleList([
                make_block(f"{prefix}.fuse_layers.{b}.0", out_channels[b - 1], out_channels[b], 2)]))
        self.fuse_layers = nn.ModuleList(rows)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        n_fused = self.in_branches if self.adds_branches else self.out_branches
        outs = []
        for i in range(n_fused):
            y = None
            for j in range(i - 1, i + 2):
                if not 0 <= j < self.in_branches:
                    continue
                layer = self.fuse_layers[i][j]
                t = layer(xs[j]) if layer is not None else xs[j]
                if y is None:
                    y = t
                else:
                    y = y + F.interpolate(t, size=y.shape[2:], mode="bilinear", align_corners=False)
            outs.append(self.act(y))
        for b in range(n_fused, self.out_branches) if self.adds_branches else ():
            outs.append(self.fuse_layers[b][0](outs[b - 1]))
        return outs


class HeadModule(nn.Module):
    """Classification head: per-resolution increase, strided merge, final 1x1, global pool."""

    def __init__(self, prefix: str, pre_channels: Sequence[int], head_channels: Sequence[int] | None,
                 last_channel: int, make_block: Callable[..., InvertedResidual],
                 act: Callable[[], nn.Module], bn_kwargs: dict) -> None:
        super().__init__()
        if head_channels:
            self.incre_modules = nn.ModuleList(
                make_block(f"{prefix}.incre_modules.{i}", c, head_channels[i], 1)
                for i, c in enumerate(pre_channels))
        else:
            head_channels = list(pre_channels)
            self.incre_modules = nn.ModuleList()
        self.downsamp_modules = nn.ModuleList(
            make_block(f"{prefix}.downsamp_modules.{i}", head_channels[i], head_channels[i + 1], 2)
            for i in range(len(pre_channels) - 1))
        self.final_layer = ConvBNReLU(head_channels[-1], last_channel, 1, act=act, bn_kwargs=bn_kwargs)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        if len(self.incre_modules):
            x = self.incre_modules[0](xs[0])
            for i, down in enumerate(self.downsamp_modules):
                x = self.incre_modules[i + 1](xs[i + 1]) + down(x)
        else:
            x = xs[0]
            for i, down in enumerate(self.downsamp_modules):
                x = xs[i + 1] + down(x)
        x = self.final_layer(x)
        return x.mean(dim=(2, 3))


class HighResolutionNet(nn.Module):
    """HR-NAS network: stem, (FuseModule, ParallelModule) per stage, task head."""

    def __init__(self, params: dict, block_arch: BlockArch) -> None:
        super().__init__()
        act = ACTIVATIONS[params["active_fn"]]
        bn_kwargs = {"momentum": params["bn_momentum"], "eps": params["bn_epsilon"]}
        expand_ratio = params["expand_ratio"]
        expand = expand_ratio != 1
        self.task = params["task"]
        input_channel = params["input_channel"]
        setting = params["inverted_residual_setting"]
        self.block_names: list[str] = []

        def make_block(prefix: str, inp: int, oup: int, stride: int) -> InvertedResidual:
            kernel_sizes, hiddens = block_arch(prefix, inp, oup)
            self.block_names.append(prefix)
            return InvertedResidual(inp, oup, stride, kernel_sizes, hiddens, expand, act, bn_kwargs)

        stem = []
        if params["input_stride"] > 1:
            stem.append(ConvBNReLU(3, input_channel[0], 3, 2, act=act, bn_kwargs=bn_kwargs))
        if params["input_stride"] > 2:
            stem.append(ConvBNReLU(input_channel[0], input_channel[1], 3, 2, act=act, bn_kwargs=bn_kwargs))
        self.downsamples = nn.Sequential(*stem)

        features: list[nn.Module] = []
        for s, (_, num_blocks, channels) in enumerate(setting):
            in_channels = [input_channel[1]] if s == 0 else setting[s - 1][2]
            features.append(FuseModule(f"features.{2 * s}", in_channels, channels, make_block, act))
            features.append(ParallelModule(f"features.{2 * s + 1}", num_blocks, channels, make_block))
        last_channel = params["last_channel"]
        if self.task == "classification":
            features.append(HeadModule(f"features.{2 * len(setting)}", setting[-1][2],
                                       params.get("head_channels"), last_channel, make_block, act,
                                       bn_kwargs))
            self.classifier = nn.Sequential(nn.Dropout(params.get("dropout_ratio", 0.2)),
                                            nn.Linear(last_channel, params["num_classes"]))
        else:
            if params.get("fcn_head_for_seg"):
                self.transform = ConvBNReLU(sum(setting[-1][2]), last_channel, 1, act=act,
                                            bn_kwargs=bn_kwargs)
            else:
                self.transform = make_block("transform", sum(setting[-1][2]), last_channel, 1)
            self.classifier = nn.Conv2d(last_channel, params["num_classes"], 1)
        self.features = nn.Sequential(*features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = [self.downsamples(x)]
        for layer in self.features:
            xs = layer(xs)
        if self.task == "classification":
            return self.classifier(xs)
        size = xs[0].shape[2:]
        xs = [F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in xs]
        return self.classifier(self.transform(torch.cat(xs, dim=1)))


def supernet_arch(params: dict) -> BlockArch:
    """Every block carries every kernel size with hidden = round(inp * expand_ratio)."""
    def arch(prefix: str, inp: int, oup: int) -> tuple[list[int], list[int]]:
        ks = list(params["kernel_sizes"])
        return ks, [int(round(inp * params["expand_ratio"]))] * len(ks)
    return arch
