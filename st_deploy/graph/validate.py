"""Structural checks of an untrusted serialised graph (a compact.pt from somewhere)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import DeployError
from .vocabulary import ACTS, FORMAT_VERSION, LAYER_OPS, OPS

_REQUIRED_PARAMS = {"conv2d": ("weight", "bias"), "linear": ("weight", "bias"), "scale_shift": ("shift",)}


def _int(v: Any, what: str, lo: int = 0, hi: int = 1 << 20) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise DeployError(f"graph: {what} must be an int in [{lo}, {hi}], found {v!r:.40}")
    return v


def validate_graph_dict(d: Any) -> None:
    if not isinstance(d, dict) or not {"inputs", "outputs", "nodes"} <= set(d):
        raise DeployError("graph: expected a dict with inputs, outputs and nodes")
    if d.get("format_version") != FORMAT_VERSION:
        raise DeployError(f"graph: format_version {d.get('format_version')!r} is not {FORMAT_VERSION}")
    if not isinstance(d["nodes"], list) or not isinstance(d["inputs"], list) or not isinstance(d["outputs"], list):
        raise DeployError("graph: inputs, outputs and nodes must be lists")
    known = set()
    for name in d["inputs"]:
        if not isinstance(name, str):
            raise DeployError("graph: input names must be strings")
        known.add(name)
    for i, n in enumerate(d["nodes"]):
        if not isinstance(n, dict) or not {"name", "op", "inputs", "attrs", "params"} <= set(n):
            raise DeployError(f"graph: node {i} is not a dict with name, op, inputs, attrs, params")
        name, op = n["name"], n["op"]
        if not isinstance(name, str) or name in known:
            raise DeployError(f"graph: node {i} has a missing or duplicate name {name!r:.60}")
        if op not in OPS:
            raise DeployError(f"graph: node {name!r} has unknown op {op!r:.40}")
        if not isinstance(n["inputs"], list) or not n["inputs"] or not all(isinstance(x, str) for x in n["inputs"]):
            raise DeployError(f"graph: node {name!r} inputs must be a non-empty list of names")
        for x in n["inputs"]:
            if x not in known:
                raise DeployError(f"graph: node {name!r} reads {x!r}, which no earlier node writes")
        if not isinstance(n["attrs"], dict) or not isinstance(n["params"], dict):
            raise DeployError(f"graph: node {name!r} attrs and params must be dicts")
        for k, v in n["params"].items():
            if op == "opaque" and k == "onnx" and isinstance(v, torch.Tensor) and v.dtype == torch.uint8:
                continue
            if not isinstance(v, torch.Tensor) or not v.is_floating_point():
                raise DeployError(f"graph: node {name!r} param {k!r} is not a float tensor")
            if not torch.isfinite(v).all():
                raise DeployError(f"graph: node {name!r} param {k!r} contains NaN or Inf")
        for k in _REQUIRED_PARAMS.get(op, ()):
            if k not in n["params"]:
                raise DeployError(f"graph: node {name!r} ({op}) lacks param {k!r}")
        _check_node(name, op, n["attrs"], n["params"], len(n["inputs"]))
        known.add(name)
    for name in d["outputs"]:
        if name not in known:
            raise DeployError(f"graph: output {name!r:.60} is not produced by any node")


def _ints(v: Any, what: str, n: int, lo: int, hi: int) -> list[int]:
    if not isinstance(v, (list, tuple)) or len(v) != n:
        raise DeployError(f"graph: {what} must be a list of {n} ints, found {v!r:.40}")
    return [_int(a, what, lo, hi) for a in v]


def _int_or_pair(v: Any, what: str, lo: int, hi: int) -> None:
    if isinstance(v, (list, tuple)):
        _ints(v, what, 2, lo, hi)
    else:
        _int(v, what, lo, hi)


def _check_node(name: str, op: str, attrs: dict, params: dict, n_inputs: int) -> None:
    act = attrs.get("act", attrs.get("kind", "none"))
    if (op in LAYER_OPS or op == "act") and act not in ACTS:
        raise DeployError(f"graph: node {name!r} has unknown activation {act!r:.40}")
    if op in LAYER_OPS:
        w, b = params["weight"], params["bias"]
        mask = params.get("mask")
        if mask is not None and (mask.shape != w.shape or not ((mask == 0) | (mask == 1)).all()):
            raise DeployError(f"graph: node {name!r} mask must be binary with the weight's shape")
        if b.dim() != 1 or b.shape[0] != w.shape[0]:
            raise DeployError(f"graph: node {name!r} bias shape {tuple(b.shape)} does not fit weight {tuple(w.shape)}")
    if op == "conv2d":
        w = params["weight"]
        if w.dim() != 4 or 0 in w.shape:
            raise DeployError(f"graph: node {name!r} conv weight shape {tuple(w.shape)} is not [O, I/g, kh, kw]")
        _int_or_pair(attrs.get("stride"), f"{name}.stride", 1, 16)
        _int_or_pair(attrs.get("padding"), f"{name}.padding", 0, 64)
        _int_or_pair(attrs.get("dilation", 1), f"{name}.dilation", 1, 64)
        g = _int(attrs.get("groups"), f"{name}.groups", 1)
        if w.shape[0] % g:
            raise DeployError(f"graph: node {name!r} out channels {w.shape[0]} not divisible by groups {g}")
    if op == "linear" and params["weight"].dim() != 2:
        raise DeployError(f"graph: node {name!r} linear weight must be 2-D")
    if op == "resize":
        if attrs.get("mode") not in ("nearest", "bilinear"):
            raise DeployError(f"graph: node {name!r} resize mode must be nearest or bilinear")
        if n_inputs == 1:
            _int(attrs.get("scale"), f"{name}.scale", 1, 64)
    if op == "add" and n_inputs < 2:
        raise DeployError(f"graph: node {name!r} add needs two or more inputs")
    if op == "mul" and n_inputs != 2:
        raise DeployError(f"graph: node {name!r} mul needs two inputs")
    if op == "pool":
        if attrs.get("mode") not in ("max", "avg"):
            raise DeployError(f"graph: node {name!r} pool mode must be max or avg")
        _ints(attrs.get("kernel"), f"{name}.kernel", 2, 1, 1024)
        _ints(attrs.get("stride"), f"{name}.stride", 2, 1, 1024)
        _ints(attrs.get("padding"), f"{name}.padding", 2, 0, 512)
    if op == "adaptive_avg_pool":
        _ints(attrs.get("size"), f"{name}.size", 2, 1, 1 << 16)
    if op == "flatten":
        _int(attrs.get("hw"), f"{name}.hw", 1, 1 << 24)
    if op == "layer_norm" and not isinstance(attrs.get("eps"), float):
        raise DeployError(f"graph: node {name!r} layer_norm eps must be a float")
    if op == "gather":
        idx = attrs.get("index")
        if not isinstance(idx, list) or not idx:
            raise DeployError(f"graph: node {name!r} gather index must be a non-empty list")
        for i in idx:
            _int(i, f"{name}.index", 0, 1 << 24)
    if op == "opaque":
        if not isinstance(params.get("onnx"), torch.Tensor) or not isinstance(attrs.get("out_channels"), int):
            raise DeployError(f"graph: opaque node {name!r} needs its onnx model and out_channels")
