"""The dataflow graph every stage after loading works on.

A network is a list of nodes in topological order; each node reads named tensors and
writes one. Weights live on the nodes, so a graph is self-contained and serialises to
plain dicts of tensors (loadable with torch.load(weights_only=True)). Compaction rewrites
graphs, the planner annotates conv/linear nodes, and the exporters translate node by node.

Ops (attrs / params):
  conv2d     stride, padding, groups, act, dilation (optional, default 1) / weight [O, I/g, kh, kw],
             bias [O], mask (optional, same shape as weight: the unstructured mask still present;
             weight is already masked). stride, padding and dilation are an int, or [h, w] where
             the two axes differ (pair() reads both forms)
  linear     act / weight [O, I], bias [O], mask (optional)
  act        kind
  add        (inputs: two or more tensors of equal shape; a [C] channel-constant input allowed via
             'scale_shift' instead)
  scale_shift  / scale [C] (optional), shift [C]: y = x * scale + shift per channel (NCHW or NC)
  resize     mode ('nearest' | 'bilinear'), scale (int) or, with a second input, to that input's
             spatial size; align_corners is always False
  concat     (channel axis)
  global_avg_pool  NCHW -> NC, or N,C,1,1 with keepdim True (squeeze-excitation reads it as a map)
  pool       mode ('max' | 'avg'), kernel [kh, kw], stride [sh, sw], padding [ph, pw], ceil_mode,
             count_include_pad (avg): a per-channel window reduction as torch's max/avg_pool2d
  adaptive_avg_pool  size [oh, ow]: torch's adaptive_avg_pool2d to that size
  mul        (two inputs with the same channels; a N,C,1,1 input broadcasts over the other's H, W)
  flatten    hw: N,C,H,W -> N,C*H*W (hw = H*W, fixed at lowering; 1 for a pooled N,C,1,1 map)
  layer_norm eps: normalise over the channel axis at every position (no affine: a scale_shift
             follows where the model had one)
  gather     index [list of input channels]: output channel j is input channel index[j]
             (torch.chunk/split and channel shuffles)
  opaque     target, out_shapes / onnx (uint8 tensor: a serialised ONNX model computing it):
             an op st-deploy has no rule for, run as it is, its channels kept whole
Activation kinds: none, relu, relu6, swish, hswish, sigmoid, hsigmoid, gelu, tanh.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from .validate import validate_graph_dict
from .vocabulary import ACTS, FORMAT_VERSION, LAYER_ACTS, LAYER_OPS, OPS, pair  # noqa: F401  (re-exported)

def is_layer(n: "Node") -> bool:
    return n.op in LAYER_OPS


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "inputs": list(self.inputs),
                "attrs": dict(self.attrs), "params": dict(self.params)}


@dataclass
class Graph:
    """Nodes in topological order; a node's output tensor is named after the node."""

    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def producers(self) -> dict[str, Node]:
        """Node writing each tensor (graph inputs have none)."""
        return {n.name: n for n in self.nodes}

    def replace_uses(self, old: str, new: str) -> None:
        """Make every reader of tensor `old` (nodes and graph outputs) read `new` instead.

        `new` must be written before every reader of `old` (true when it is `old`'s input or
        an earlier tensor), so the node order stays topological.
        """
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def clone(self) -> "Graph":
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "inputs": list(self.inputs),
                "outputs": list(self.outputs), "nodes": [n.to_dict() for n in self.nodes]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Graph":
        validate_graph_dict(d)
        nodes = [Node(n["name"], n["op"], list(n["inputs"]), dict(n["attrs"]), dict(n["params"]))
                 for n in d["nodes"]]
        return cls(nodes, list(d["inputs"]), list(d["outputs"]))

    def remove_unused(self) -> "Graph":
        """Drop nodes whose outputs nothing reads (dead code after rewrites)."""
        live = set(self.outputs)
        kept = []
        for n in reversed(self.nodes):
            if n.name in live:
                kept.append(n)
                live.update(n.inputs)
        self.nodes = kept[::-1]
        return self
