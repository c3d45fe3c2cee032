"""What compaction did, as a JSON-serialisable dict: sizes, FLOPs, removed structure, sparsity.

FLOPs are analytic (2 * multiply-accumulates of conv/linear layers, from graph shapes at the
ticket's default input shape); "dense" counts every weight of a layer's shape, "nonzero"
only the unmasked ones (what a sparse kernel can skip to). Parameters: weights, biases that
are not all zero, and scale/shift vectors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..graph.ir import Graph
from ..graph.kinds import is_conv, is_layer
from ..graph.shapes import infer_shapes
from ..models.supertickets import HighResolutionNet


def count_params(graph: Graph) -> dict[str, int]:
    dense = nonzero = 0
    for n in graph.nodes:
        for k, v in n.params.items():
            if k == "mask" or (k == "bias" and not bool(v.any())):
                continue  # a lowered bias-free conv carries a zero bias: not a parameter
            dense += v.numel()
            nonzero += int(torch.count_nonzero(v))
    return {"dense": dense, "nonzero": nonzero}


def count_flops(graph: Graph, input_shape: tuple[int, ...]) -> dict[str, int]:
    shapes = infer_shapes(graph, input_shape)
    dense = nonzero = 0
    for n in graph.nodes:
        if not is_layer(n):
            continue
        out = shapes[n.name]
        positions = out[0] * (out[2] * out[3] if len(out) == 4 else 1)
        w = n.params["weight"]
        dense += 2 * w.numel() * positions
        nonzero += 2 * int(torch.count_nonzero(w)) * positions
    return {"dense": dense, "nonzero": nonzero}


def layer_table(graph: Graph, input_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """Per conv/linear: shape, remaining density, MACs (the planner's starting point)."""
    shapes = infer_shapes(graph, input_shape)
    rows = []
    for n in graph.nodes:
        if is_layer(n):
            w = n.params["weight"]
            nnz = int(torch.count_nonzero(n.params["mask"]))
            rows.append({"name": n.name, "op": n.op, "weight_shape": list(w.shape),
                         "groups": n.attrs.get("groups", 1), "output_shape": list(shapes[n.name]),
                         "nonzero": nnz, "density": round(nnz / max(w.numel(), 1), 6),
                         "sparsity": round(1 - nnz / max(w.numel(), 1), 6)})
    return rows


def supertickets_blocks(model: HighResolutionNet, after: Graph) -> list[dict[str, Any]]:
    """Branches and hidden channels of every block, before (the ticket) and after."""
    mods = dict(model.named_modules())
    convs = {n.name: n for n in after.nodes if is_conv(n)}
    rows = []
    for prefix in model.block_names:
        blk = mods[prefix]
        dw = 1 if blk.expand else 0
        after_h = []
        for b in range(len(blk.ops)):
            node = convs.get(f"{prefix}.ops.{b}.{dw}.0")
            after_h.append(int(node.params["weight"].shape[0]) if node is not None else 0)
        live = [k for k, h in zip(blk.kernel_sizes, after_h) if h]
        rows.append({"block": prefix, "kernel_sizes": list(blk.kernel_sizes),
                     "hidden_before": list(blk.hiddens), "hidden_after": after_h,
                     "kernel_sizes_after": live,
                     "branches_removed": len(blk.ops) - len(live),
                     "channels_removed": sum(blk.hiddens) - sum(after_h),
                     "removed": bool(len(blk.ops)) and not live})
    return rows


def layer_channels(before: Graph, after: Graph) -> list[dict[str, Any]]:
    """Output channels of every conv/linear of the lowered graph, before and after."""
    after_c = {n.name: int(n.params["weight"].shape[0]) for n in after.nodes if is_layer(n)}
    return [{"layer": n.name, "before": int(n.params["weight"].shape[0]), "after": after_c.get(n.name, 0)}
            for n in before.nodes if is_layer(n)]


def build_report(module: nn.Module, before: Graph, after: Graph, input_shape: tuple[int, ...],
                 log: Any, error: dict[str, Any], threshold: float, source_family: str) -> dict[str, Any]:
    report: dict[str, Any] = {
        "source_family": source_family,
        "threshold": threshold,
        "exact": threshold == 0.0,
        "input_shape": list(input_shape),
        "params": {"before": count_params(before), "after": count_params(after)},
        "flops": {"before": count_flops(before, input_shape), "after": count_flops(after, input_shape)},
        "nodes": {"before": len(before.nodes), "after": len(after.nodes)},
        "passes": {"unselected_channels": sum(log.unselected.values()),
                   "constants_folded": log.constants_folded, "folds": log.folds, "rounds": log.rounds},
        "error": error,
        "layers": layer_table(after, input_shape),
    }
    channels = layer_channels(before, after)
    report["channels"] = {"removed": sum(c["before"] - c["after"] for c in channels),
                          "per_layer": [c for c in channels if c["before"] != c["after"]]}
    if isinstance(module, HighResolutionNet):
        blocks = supertickets_blocks(module, after)
        report["blocks"] = blocks
        report["removed"] = {"blocks": sum(b["removed"] for b in blocks),
                             "branches": sum(b["branches_removed"] for b in blocks),
                             "hidden_channels": sum(b["channels_removed"] for b in blocks)}
    return report
