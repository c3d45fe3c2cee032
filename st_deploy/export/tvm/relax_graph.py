"""Graph -> Relax IRModule (one function "main", NCHW float32, static shapes).

Every conv2d/linear goes to our kernels (ops/), sparse or at full density: the CPU kernels on
llvm targets (TVM 0.27's default CPU pipeline schedules no convolution, and an unscheduled conv
runs 40-100x slower than ONNX Runtime), the CUDA kernels (symbols cuda_*) on cuda (DLight has no
convolution rule either). A Relax conv2d is used only where no kernel fits, and the manifest says
so. Bias, relu/relu6 and a following residual add are fused into the kernel call (its epilogue is
act(conv + bias) + residual); an add of several convs becomes a chain of such calls.

The other ops (act, add, mul, scale_shift, resize, concat, gather, flatten, the poolings,
layer_norm) are Relax ops; an opaque node is its ONNX model imported by Relax's ONNX frontend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tvm import relax

from ...errors import DeployError
from ...graph.ir import Graph, Node, pair
from ...graph.opaque import onnx_bytes
from ...graph.residual import residual_chains
from ...graph.kinds import is_conv, is_layer, is_linear, layer_kind
from ...plan import format_of
from ...graph.vocabulary import ACT_CODES
from .ops import KERNEL_ACTS, KERNEL_FAMILIES, LayerCall

# Activations lowered to the kernel library's st_activate on CPU targets (see _act).
KERNEL_POST_ACTS = ("swish", "hswish", "sigmoid", "hsigmoid", "gelu", "tanh")


@dataclass
class Lowered:
    mod: Any                                     # tvm.IRModule
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> {format, impl, note, call}


def _const_c(v: Any, ndim: int) -> Any:
    a = v.detach().cpu().numpy().astype(np.float32)
    return relax.const(a.reshape(1, -1, *([1] * (ndim - 2))))


def _act(bb: relax.BlockBuilder, x: Any, kind: str, kernel_acts: bool = False) -> Any:
    """kind(x). kernel_acts: the CPU kernel library is linked in, and the activations with an exp, erf
    or several passes run as its vectorised st_activate (TVM's llvm build schedules no elementwise
    op: Relax's sigmoid/gelu took 60-78 % of EfficientNet's and ConvNeXt's time)."""
    op = relax.op
    if kind == "none":
        return x
    if kernel_acts and kind in KERNEL_POST_ACTS:
        args = [x, relax.op.null_value(), relax.prim_value(ACT_CODES[kind])]
        return bb.emit(relax.call_dps_packed("activate", args, out_ty=x.ty))
    if kind == "relu":
        return bb.emit(op.nn.relu(x))
    if kind == "relu6":
        return bb.emit(op.clip(x, relax.prim_value(0.0), relax.prim_value(6.0)))
    if kind == "swish":
        return bb.emit(op.multiply(x, op.sigmoid(x)))
    if kind == "hswish":
        r6 = op.clip(op.add(x, relax.const(3.0, "float32")), relax.prim_value(0.0), relax.prim_value(6.0))
        return bb.emit(op.divide(op.multiply(x, r6), relax.const(6.0, "float32")))
    if kind == "sigmoid":
        return bb.emit(op.sigmoid(x))
    if kind == "hsigmoid":
        r6 = op.clip(op.add(x, relax.const(3.0, "float32")), relax.prim_value(0.0), relax.prim_value(6.0))
        return bb.emit(op.divide(r6, relax.const(6.0, "float32")))
    if kind == "gelu":
        return bb.emit(op.nn.gelu(x))
    if kind == "tanh":
        return bb.emit(op.tanh(x))
    raise DeployError(f"activation {kind!r} has no TVM lowering")


def _residual_fusions(graph: Graph, kernel_nodes: set[str],
                      shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[list[str], list[str]]]:
    """add node -> (kernel convs it absorbs, in chain order; the add's other inputs): the chains
    of graph/residual.py, for convs whose kernel applies their activation (act(conv + bias) comes
    before the residual). Adds that broadcast are left alone (a kernel's residual has its
    output's shape)."""
    def absorbable(conv: str, add: Node) -> bool:
        node = graph.node(conv)
        return (conv in kernel_nodes and is_conv(node) and node.attrs.get("act", "none") in KERNEL_ACTS
                and all(shapes[i] == shapes[add.name] for i in add.inputs))
    return residual_chains(graph, absorbable)


def to_relax(graph: Graph, shapes: dict[str, tuple[int, ...]], kernels: bool, prefix: str = "") -> Lowered:
    """Lower the planned `graph` (st_deploy.plan.planned: each conv/linear node carries its format)
    at fixed `shapes` (st_deploy.graph.shapes.infer_shapes).

    kernels: whether our kernels are available
    on the target (else every layer is a dense Relax op); prefix: their symbols' prefix
    (TargetSpec.kernel_prefix).
    """
    if len(graph.inputs) != 1:
        raise DeployError(f"graph: {len(graph.inputs)} inputs; the TVM export handles single-input graphs")
    result = Lowered(mod=None)
    kernel_nodes: set[str] = set()
    if kernels:
        for n in graph.nodes:
            if is_layer(n):
                why = KERNEL_FAMILIES[layer_kind(n)][0](n)
                if why is None:
                    kernel_nodes.add(n.name)
                else:
                    result.layers[n.name] = {"note": f"no kernel fits ({why}): Relax op, TVM's unscheduled default"}
    fused = _residual_fusions(graph, kernel_nodes, shapes)
    absorbed = {conv for convs, _ in fused.values() for conv in convs}
    calls = 0

    def layer(n: Node, residual: Any) -> Any:
        # "call": the index of this layer's kernel call in a run (absorbed convs are called at
        # their add, out of graph order), which per-layer timing maps calls to layers by.
        nonlocal calls
        info = result.layers.setdefault(n.name, {})
        y = _layer(bb, n, env[n.inputs[0]], shapes[n.name], format_of(n), n.name in kernel_nodes,
                   residual, info, kernels, prefix)
        if n.name in kernel_nodes:
            info["call"] = calls
            calls += 1
        return y

    bb = relax.BlockBuilder()
    x = relax.Var(graph.inputs[0], relax.TensorType(shapes[graph.inputs[0]], "float32"))
    env: dict[str, Any] = {graph.inputs[0]: x}
    with bb.function("main", [x]):
        with bb.dataflow():
            for n in graph.nodes:
                if n.name in absorbed:
                    continue  # emitted at its add, where the residual exists
                if n.name in fused:
                    convs, others = fused[n.name]
                    acc = env[others[0]]
                    for o in others[1:]:  # the inputs no conv absorbs, summed first
                        acc = bb.emit(relax.op.add(acc, env[o]))
                    for c in convs:
                        acc = layer(graph.node(c), acc)
                        result.layers[c]["fused"] = f"residual add {n.name}"
                    env[n.name] = acc
                    continue
                if is_layer(n):
                    env[n.name] = layer(n, None)
                else:
                    env[n.name] = _other(bb, n, [env[i] for i in n.inputs], shapes, kernels and not prefix)
            outs = [env[o] for o in graph.outputs]
            out = bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
        bb.emit_func_output(out)
    result.mod = bb.get()
    return result


def _layer(bb: relax.BlockBuilder, n: Node, x: Any, out_shape: tuple[int, ...], fmt: str, on_kernel: bool,
           residual: Any, info: dict[str, Any], kernels: bool, prefix: str = "") -> Any:
    act = n.attrs.get("act", "none")
    info["format"] = fmt
    if on_kernel:
        kernel_act = act if act in KERNEL_ACTS else "none"
        call, impl = KERNEL_FAMILIES[layer_kind(n)][1](
            LayerCall(n, fmt, x, tuple(out_shape), KERNEL_ACTS[kernel_act], residual, prefix))
        info["impl"] = prefix + impl
        y = bb.emit(call)
        return y if kernel_act == act else _act(bb, y, act, kernels and not prefix)
    # Dense Relax op: a layer no kernel takes (noted above), or a target without our kernels.
    if fmt != "dense":
        info["note"] = (f"plan says {fmt}, but this target has no sparse kernels: runs dense" if not kernels
                        else info.get("note", "") + f"; plan said {fmt}, runs dense")
    info["run_format"] = "dense"
    w = relax.const(n.params["weight"].detach().cpu().numpy())
    if is_linear(n):
        y = bb.emit(relax.op.matmul(x, relax.op.permute_dims(w, [1, 0])))
        y = bb.emit(relax.op.add(y, _const_c(n.params["bias"], 2)))
        info["impl"] = "relax matmul"
    else:
        y = bb.emit(relax.op.nn.conv2d(x, w, strides=pair(n.attrs["stride"]), padding=pair(n.attrs["padding"]),
                                       dilation=pair(n.attrs.get("dilation", 1)), groups=int(n.attrs["groups"])))
        y = bb.emit(relax.op.add(y, _const_c(n.params["bias"], 4)))
        info["impl"] = "relax conv2d"
    return _act(bb, y, act, kernels and not prefix)


def _other(bb: relax.BlockBuilder, n: Node, xs: list[Any], shapes: dict[str, tuple[int, ...]],
           kernel_acts: bool = False) -> Any:
    op = relax.op
    if n.op == "act":
        return _act(bb, xs[0], n.attrs["kind"], kernel_acts)
    if n.op == "add":
        y = xs[0]
        for x in xs[1:]:
            y = bb.emit(op.add(y, x))
        return y
    if n.op == "scale_shift":
        ndim = len(shapes[n.inputs[0]])
        y = xs[0]
        if "scale" in n.params:
            y = bb.emit(op.multiply(y, _const_c(n.params["scale"], ndim)))
        return bb.emit(op.add(y, _const_c(n.params["shift"], ndim)))
    if n.op == "resize":
        size = tuple(int(s) for s in shapes[n.name][2:])
        if n.attrs["mode"] == "nearest":
            # torch "nearest": source index floor(dst * in / out)
            return bb.emit(op.image.resize2d(xs[0], size, method="nearest_neighbor",
                                             coordinate_transformation_mode="asymmetric", rounding_method="floor"))
        if n.attrs["mode"] == "bilinear":
            return bb.emit(op.image.resize2d(xs[0], size, method="linear",
                                             coordinate_transformation_mode="half_pixel"))
        raise DeployError(f"{n.name}: resize mode {n.attrs['mode']!r} has no TVM lowering")
    if n.op == "concat":
        return bb.emit(op.concat(xs, axis=1))
    if n.op == "global_avg_pool":
        return bb.emit(op.mean(xs[0], axis=[2, 3], keepdims=bool(n.attrs.get("keepdim", False))))
    if n.op == "pool":
        a = n.attrs
        pool = op.nn.max_pool2d if a["mode"] == "max" else op.nn.avg_pool2d
        (ph, pw) = a["padding"]
        return bb.emit(pool(xs[0], tuple(a["kernel"]), tuple(a["stride"]), (ph, pw, ph, pw),
                            ceil_mode=bool(a.get("ceil_mode", False)),
                            count_include_pad=bool(a.get("count_include_pad", True)) and a["mode"] == "avg"))
    if n.op == "adaptive_avg_pool":
        return bb.emit(op.nn.adaptive_avg_pool2d(xs[0], tuple(n.attrs["size"])))
    if n.op == "mul":
        return bb.emit(op.multiply(xs[0], xs[1]))
    if n.op == "flatten":
        return bb.emit(op.reshape(xs[0], shapes[n.name]))
    if n.op == "layer_norm":
        c = shapes[n.name][1]
        ones, zeros = (relax.const(np.full(c, v, dtype=np.float32)) for v in (1.0, 0.0))
        return bb.emit(op.nn.layer_norm(xs[0], ones, zeros, axes=[1], epsilon=n.attrs["eps"]))
    if n.op == "gather":
        return bb.emit(op.take(xs[0], relax.const(np.array(n.attrs["index"], dtype=np.int64)), axis=1))
    if n.op == "opaque":
        return _opaque(bb, n, xs, shapes)
    raise DeployError(f"{n.name}: op {n.op!r} has no TVM lowering")


def _opaque(bb: relax.BlockBuilder, n: Node, xs: list[Any], shapes: dict[str, tuple[int, ...]]) -> Any:
    """An op st-deploy has no rule for, imported from its ONNX form by Relax's ONNX frontend and
    called as a function of the module."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    names = list(dict.fromkeys(n.inputs))
    shape_dict = {f"in{k}": list(shapes[x]) for k, x in enumerate(names)}
    try:
        sub = from_onnx(onnx.load_from_string(onnx_bytes(n)), shape_dict=shape_dict)
    except Exception as e:
        raise DeployError(f"node {n.name!r}: opaque op {n.attrs.get('target')} does not import into TVM "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None
    fn = sub["main"].without_attr("global_symbol")
    gv = bb.add_func(fn, f"opaque_{len(bb.get().functions)}")
    by_name = dict(zip(n.inputs, xs))
    return bb.emit(relax.Call(gv, [by_name[x] for x in names]))
