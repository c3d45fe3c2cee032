"""Hand-built graphs covering every IR op the ONNX exporters translate (test helpers)."""

from __future__ import annotations

import torch

from st_deploy.graph.ir import Graph, Node


def _conv(name: str, x: str, cin: int, cout: int, k: int, g: torch.Generator, stride: int = 1, groups: int = 1,
          act: str = "relu", sparsity: float = 0.9) -> Node:
    w = torch.randn(cout, cin // groups, k, k, generator=g) * (2.0 / (cin // groups * k * k)) ** 0.5
    mask = (torch.rand(w.shape, generator=g) >= sparsity).float()
    return Node(name, "conv2d", [x], {"stride": stride, "padding": k // 2, "groups": groups, "act": act},
                {"weight": w * mask, "bias": torch.randn(cout, generator=g) * 0.1, "mask": mask})


def every_op_graph(seed: int = 0) -> Graph:
    """conv (1x1, 3x3 stride 2, 5x5, depthwise, grouped), every activation, 2- and 3-input adds
    (residual fusion), scale_shift on NCHW and NC, both resize modes, concat, pooling, linear."""
    g = torch.Generator().manual_seed(seed)
    n = [
        _conv("stem", "x", 3, 16, 3, g, stride=2, act="relu6", sparsity=0.5),
        _conv("pw1", "stem", 16, 32, 1, g, act="relu"),
        _conv("dw1", "pw1", 32, 32, 3, g, groups=32, act="relu6", sparsity=0.5),
        _conv("proj1", "dw1", 32, 16, 1, g, act="none"),
        Node("res1", "add", ["stem", "proj1"]),
        _conv("b1", "res1", 16, 16, 1, g, act="none"),
        _conv("b2", "res1", 16, 16, 3, g, act="none", sparsity=0.8),
        _conv("b3", "res1", 16, 16, 5, g, act="none", sparsity=0.8),
        Node("sum3", "add", ["b1", "b2", "b3"]),
        Node("act1", "act", ["sum3"], {"kind": "hswish"}),
        Node("ss1", "scale_shift", ["act1"], {}, {"scale": torch.rand(16, generator=g) + 0.5,
                                                 "shift": torch.randn(16, generator=g) * 0.1}),
        _conv("grp", "ss1", 16, 16, 3, g, groups=4, act="swish", sparsity=0.0),
        _conv("down", "grp", 16, 24, 3, g, stride=2, act="relu"),
        Node("up_near", "resize", ["down"], {"mode": "nearest", "scale": 2}),
        Node("up_bil", "resize", ["down", "grp"], {"mode": "bilinear"}),
        Node("cat", "concat", ["grp", "up_near", "up_bil"]),
        _conv("fuse", "cat", 64, 40, 1, g, act="swish"),
        Node("pool", "global_avg_pool", ["fuse"]),
        Node("ss2", "scale_shift", ["pool"], {}, {"shift": torch.randn(40, generator=g) * 0.1}),
        Node("fc1", "linear", ["ss2"], {"act": "relu"},
             {"weight": torch.randn(32, 40, generator=g) * 0.2, "bias": torch.randn(32, generator=g) * 0.1}),
        Node("fc2", "linear", ["fc1"], {"act": "none"},
             {"weight": torch.randn(10, 32, generator=g) * 0.2, "bias": torch.randn(10, generator=g) * 0.1}),
    ]
    mask = (torch.rand(32, 40, generator=g) >= 0.8).float()
    n[-2].params["weight"] = n[-2].params["weight"] * mask
    n[-2].params["mask"] = mask
    return Graph(n, ["x"], ["fc2"])
