"""Lower a SuperTickets HighResolutionNet to a Graph by walking its module classes.

No tracing: each class of st_deploy.models.supertickets has a lowering that mirrors its
forward() line by line, with masks applied (conv weight * weight_mask, BN affine * masks).
BN becomes a scale_shift node; the depthwise BN of every branch (`ops.b.1.1`, FORMAT.md's
selection BN) is tagged role=selection so the select pass can apply the threshold. Node
names are module paths, so the report can attribute removed channels to blocks and branches.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import DeployError
from ..graph.build import GraphBuilder
from ..graph.ir import Graph
from ..models.supertickets import (ConvBNReLU, FuseModule, HeadModule, HighResolutionNet, HSwish,
                                   InvertedResidual, MaskedBatchNorm2d, MaskedConv2d, ParallelModule, Swish)

_ACTS: tuple[tuple[type, str], ...] = ((nn.ReLU6, "relu6"), (nn.ReLU, "relu"), (Swish, "swish"),
                                       (HSwish, "hswish"), (nn.Identity, "none"))


def act_kind(m: nn.Module, where: str) -> str:
    for cls, kind in _ACTS:
        if type(m) is cls:
            return kind
    raise DeployError(f"cannot compact: unsupported activation {type(m).__name__} at {where}; "
                      f"supported: ReLU, ReLU6, Swish, HSwish, Identity")


def _conv(b: GraphBuilder, name: str, m: nn.Conv2d, x: str) -> str:
    if m.kernel_size[0] != m.kernel_size[1] or m.dilation != (1, 1) or m.padding_mode != "zeros" \
            or not isinstance(m.padding, tuple) or m.padding[0] != m.padding[1] or m.stride[0] != m.stride[1]:
        raise DeployError(f"cannot compact: conv {name} has a non-square kernel, stride, padding or a "
                          f"dilation; only square, undilated, zero-padded convs are supported")
    mask = m.weight_mask if isinstance(m, MaskedConv2d) else None
    bias = m.bias
    if bias is not None and isinstance(getattr(m, "bias_mask", None), torch.Tensor):
        bias = bias * m.bias_mask
    return b.conv2d(name, x, m.weight, bias, m.stride[0], m.padding[0], m.groups, mask)


def _bn(b: GraphBuilder, name: str, m: nn.BatchNorm2d, x: str, selection: bool = False) -> str:
    if isinstance(m, MaskedBatchNorm2d):
        gamma, beta = m.effective_affine()
    else:
        gamma, beta = m.weight, m.bias
    return b.batch_norm(name, x, gamma, beta, m.running_mean, m.running_var, m.eps, selection)


def _conv_bn_act(b: GraphBuilder, name: str, m: ConvBNReLU, x: str, selection: bool = False) -> str:
    x = _conv(b, f"{name}.0", m[0], x)
    x = _bn(b, f"{name}.1", m[1], x, selection)
    return b.act(f"{name}.2", x, act_kind(m[2], f"{name}.2"))


def _block(b: GraphBuilder, name: str, m: InvertedResidual, x: str) -> str:
    shortcut = x if m.use_res else _conv(b, f"{name}.residual", m.residual, x)
    if len(m.ops) == 0:
        return shortcut
    terms = []
    for i, op in enumerate(m.ops):
        t, j = x, 0
        if m.expand:
            t = _conv_bn_act(b, f"{name}.ops.{i}.0", op[0], t)
            j = 1
        t = _conv_bn_act(b, f"{name}.ops.{i}.{j}", op[j], t, selection=True)
        terms.append(_conv(b, f"{name}.ops.{i}.{j + 1}", op[j + 1], t))
    t = b.add(f"{name}.sum", terms)
    t = _bn(b, f"{name}.pw_bn", m.pw_bn, t)
    return b.add(f"{name}.add", [shortcut, t])


def _maybe_block(b: GraphBuilder, name: str, m: nn.Module, x: str) -> str:
    """A fuse layer: a block, or Sequential(block[, nearest Upsample])."""
    if isinstance(m, InvertedResidual):
        return _block(b, name, m, x)
    x = _block(b, f"{name}.0", m[0], x)
    if len(m) > 1:
        up = m[1]
        if up.mode != "nearest" or float(up.scale_factor) != int(up.scale_factor):
            raise DeployError(f"cannot compact: {name}.1 upsamples with mode {up.mode!r}, scale "
                              f"{up.scale_factor}; only nearest with an integer scale is supported")
        x = b.resize(f"{name}.1", x, "nearest", scale=int(up.scale_factor))
    return x


def _fuse(b: GraphBuilder, name: str, m: FuseModule, xs: list[str]) -> list[str]:
    n_fused = m.in_branches if m.adds_branches else m.out_branches
    act = act_kind(m.act, f"{name}.act")
    outs = []
    for i in range(n_fused):
        y = None
        terms = []
        for j in range(i - 1, i + 2):
            if not 0 <= j < m.in_branches:
                continue
            layer = m.fuse_layers[i][j]
            t = _maybe_block(b, f"{name}.fuse_layers.{i}.{j}", layer, xs[j]) if layer is not None else xs[j]
            if y is None:
                y = t
                terms.append(t)
            else:
                terms.append(b.resize(f"{name}.resize.{i}.{j}", t, "bilinear", like=y))
        outs.append(b.act(f"{name}.act.{i}", b.add(f"{name}.add.{i}", terms), act))
    for k in range(n_fused, m.out_branches) if m.adds_branches else ():
        outs.append(_block(b, f"{name}.fuse_layers.{k}.0", m.fuse_layers[k][0], outs[k - 1]))
    return outs


def _head(b: GraphBuilder, name: str, m: HeadModule, xs: list[str]) -> str:
    if len(m.incre_modules):
        x = _block(b, f"{name}.incre_modules.0", m.incre_modules[0], xs[0])
        for i, down in enumerate(m.downsamp_modules):
            inc = _block(b, f"{name}.incre_modules.{i + 1}", m.incre_modules[i + 1], xs[i + 1])
            x = b.add(f"{name}.add.{i}", [inc, _block(b, f"{name}.downsamp_modules.{i}", down, x)])
    else:
        x = xs[0]
        for i, down in enumerate(m.downsamp_modules):
            x = b.add(f"{name}.add.{i}", [xs[i + 1], _block(b, f"{name}.downsamp_modules.{i}", down, x)])
    x = _conv_bn_act(b, f"{name}.final_layer", m.final_layer, x)
    return b.global_avg_pool(f"{name}.pool", x)


def lower_supertickets(model: HighResolutionNet) -> Graph:
    """The graph computing exactly what `model` computes in eval mode."""
    if not isinstance(model, HighResolutionNet):
        raise DeployError(f"cannot lower a {type(model).__name__} as SuperTickets; expected HighResolutionNet")
    b = GraphBuilder(["input"])
    x = "input"
    for i, m in enumerate(model.downsamples):
        x = _conv_bn_act(b, f"downsamples.{i}", m, x)
    xs = [x]
    head_out = None
    for s, layer in enumerate(model.features):
        name = f"features.{s}"
        if isinstance(layer, FuseModule):
            xs = _fuse(b, name, layer, xs)
        elif isinstance(layer, ParallelModule):
            new = []
            for i, (branch, t) in enumerate(zip(layer.branches, xs)):
                for k, block in enumerate(branch):
                    t = _block(b, f"{name}.branches.{i}.{k}", block, t)
                new.append(t)
            xs = new + xs[len(new):]
        elif isinstance(layer, HeadModule):
            head_out = _head(b, name, layer, xs)
        else:
            raise DeployError(f"cannot compact: unexpected module {type(layer).__name__} at {name}")
    if model.task == "classification":
        if head_out is None:
            raise DeployError("cannot compact: a classification HighResolutionNet without a HeadModule")
        for i, m in enumerate(model.classifier):
            if isinstance(m, nn.Linear):
                head_out = b.linear(f"classifier.{i}", head_out, m.weight, m.bias,
                                    getattr(m, "weight_mask", None))
            elif not isinstance(m, nn.Dropout):
                raise DeployError(f"cannot compact: unsupported classifier layer {type(m).__name__} at classifier.{i}")
        return b.build([head_out])
    # Segmentation / keypoints head. Resizing branch 0 to its own size is the identity
    # (bilinear, align_corners=False, equal sizes: every sample lands on a pixel), so it is skipped.
    ys = [xs[0]] + [b.resize(f"head.resize.{i}", t, "bilinear", like=xs[0]) for i, t in enumerate(xs) if i]
    x = b.concat("head.concat", ys)
    if isinstance(model.transform, InvertedResidual):
        x = _block(b, "transform", model.transform, x)
    else:
        x = _conv_bn_act(b, "transform", model.transform, x)
    x = _conv(b, "classifier", model.classifier, x)
    return b.build([x])
