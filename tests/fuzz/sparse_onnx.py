"""Helpers for fuzzing st.sparse::SparseConv: one-node models cut from a real export, a strict
dense reference, and the worker function that runs a model in onnxruntime (in a child process).

A case is a `spec`: the node's attributes, its four weight arrays, its activation input X and
residual R (captured from a run of the whole exported model), and how they are wired. `build`
turns it into a one-node ONNX model; `reference` says whether the spec is a well-formed layer
and, if so, what it computes, in float64, summing over the *stored* entries only (a pruned weight
is absent, so 0 * NaN never happens for it; padding is zeros that are multiplied).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INT32_MAX = 2 ** 31 - 1
ATTRS = ("format", "activation", "in_channels", "out_channels", "group", "kernel_shape", "strides", "pads")
ROLES = ("indptr", "indices", "values", "bias")
ACTS = ("none", "relu", "relu6", "swish", "hswish")
FORMATS = ("csr", "bsr4x1", "dwcsr")
MAX_OUT = 1 << 24  # a well-formed layer whose output is larger than this must be refused, not run


class Invalid(Exception):
    pass


# -- capture: the SparseConv nodes of an exported model, with their real inputs ------------------

def capture(model_path: str, x: np.ndarray) -> dict[str, dict[str, Any]]:
    """name -> spec of every SparseConv node, with X / R taken from a run of the whole model."""
    from st_deploy.runtime.ort import ort_session
    m = onnx.load(model_path)
    nodes = [n for n in m.graph.node if n.op_type == "SparseConv"]
    want = sorted({i for n in nodes for i in (n.input[0], *n.input[5:]) if i})
    graph_in = {i.name for i in m.graph.input}
    have = {o.name for o in m.graph.output}
    for name in want:
        if name not in graph_in and name not in have:
            m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "all.onnx")
        onnx.save(m, p)
        sess = ort_session(p, threads=1)
        feeds = {m.graph.input[0].name: x}
        outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    values = {**outs, **feeds}
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    specs = {}
    for n in nodes:
        attrs = {a.name: _attr(a) for a in n.attribute}
        specs[n.name] = {
            "name": n.name, "attrs": attrs,
            "inits": {r: inits[n.input[1 + j]].copy() for j, r in enumerate(ROLES)},
            "x": np.ascontiguousarray(values[n.input[0]]),
            "r": np.ascontiguousarray(values[n.input[5]]) if len(n.input) > 5 and n.input[5] else None,
            "as_input": [], "x_decl": None, "r_decl": None, "inputs": None, "ir": m.ir_version,
        }
    return specs


def _attr(a: onnx.AttributeProto) -> Any:
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list):
        return [int(t) for t in v]
    return v


# -- build: spec -> one-node model + feeds ---------------------------------------------------------

_DTYPE = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
          np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(np.int32): TensorProto.INT32,
          np.dtype(np.int64): TensorProto.INT64, np.dtype(np.int16): TensorProto.INT16,
          np.dtype(np.uint32): TensorProto.UINT32, np.dtype(np.uint8): TensorProto.UINT8}


def build(spec: dict[str, Any]) -> tuple[bytes, dict[str, np.ndarray]]:
    name = spec["name"]
    feeds = {"X": spec["x"]}
    graph_inputs = [helper.make_tensor_value_info("X", _DTYPE[spec["x"].dtype],
                                                  spec["x_decl"] if spec["x_decl"] is not None else spec["x"].shape)]
    inits = []
    for role in ROLES:
        arr = spec["inits"][role]
        iname = f"{name}.{role}"
        if role in spec["as_input"]:
            graph_inputs.append(helper.make_tensor_value_info(iname, _DTYPE[arr.dtype], arr.shape))
            feeds[iname] = arr
        else:
            inits.append(numpy_helper.from_array(arr, iname))
    inputs = ["X", *(f"{name}.{r}" for r in ROLES)]
    if spec["r"] is not None:
        graph_inputs.append(helper.make_tensor_value_info("R", _DTYPE[spec["r"].dtype],
                                                          spec["r_decl"] if spec["r_decl"] is not None else spec["r"].shape))
        feeds["R"] = spec["r"]
        inputs.append("R")
    if spec["inputs"] is not None:  # rewired on purpose (missing / empty / extra inputs)
        inputs = spec["inputs"]
    node = helper.make_node("SparseConv", inputs, ["Y"], name=name, domain="st.sparse")
    for k, v in spec["attrs"].items():
        node.attribute.append(helper.make_attribute(k, v, attr_type=onnx.AttributeProto.INTS if v == [] else None))
    graph = helper.make_graph([node], "fuzz", graph_inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("st.sparse", 1)])
    model.ir_version = spec["ir"]
    return model.SerializeToString(), feeds


# -- the worker: runs in the child process ---------------------------------------------------------

def run_model(task: tuple[bytes, dict[str, np.ndarray], int, str]) -> tuple[str, Any]:
    """("create-error", msg) | ("run-error", msg) | ("ok", output)."""
    from st_deploy import DeployError
    from st_deploy.runtime.ort import ort_session

    from tests.fuzz.isolate import scratch_file
    data, feeds, threads, parallel = task
    path = scratch_file(data, ".onnx")
    try:
        try:
            sess = ort_session(path, threads=threads, parallel=parallel)
        except DeployError as e:
            return "create-error", str(e)
        try:
            return "ok", sess.run(None, feeds)[0]
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            return "run-error", f"{type(e).__name__}: {e}"
    finally:
        os.unlink(path)


# -- the reference -------------------------------------------------------------------------------

def _int(attrs: dict, key: str) -> int:
    if key not in attrs:
        raise Invalid(f"attribute {key} missing")
    v = attrs[key]
    if not isinstance(v, int) or isinstance(v, bool):
        raise Invalid(f"attribute {key} is not an int")
    return v


def _ints(attrs: dict, key: str, n: int) -> int:
    if key not in attrs:
        raise Invalid(f"attribute {key} missing")
    v = attrs[key]
    if not isinstance(v, list) or len(v) != n or not all(isinstance(t, int) for t in v) or len(set(v)) != 1:
        raise Invalid(f"attribute {key} must be {n} equal ints, got {v!r}")
    return v[0]


def _str(attrs: dict, key: str, choices: tuple[str, ...]) -> str:
    if key not in attrs:
        raise Invalid(f"attribute {key} missing")
    v = attrs[key]
    if not isinstance(v, str) or v not in choices:
        raise Invalid(f"attribute {key} = {v!r}")
    return v


def geometry(spec: dict) -> dict[str, Any]:
    """The layer's parameters, or Invalid (everything ORT and our op must refuse)."""
    a = spec["attrs"]
    fmt, act = _str(a, "format", FORMATS), _str(a, "activation", ACTS)
    cin, cout, group = _int(a, "in_channels"), _int(a, "out_channels"), _int(a, "group")
    k, s, p = _ints(a, "kernel_shape", 2), _ints(a, "strides", 2), _ints(a, "pads", 4)
    for key, v in (("in_channels", cin), ("out_channels", cout), ("kernel", k), ("stride", s)):
        if not 1 <= v <= INT32_MAX:
            raise Invalid(f"{key} {v} out of range")
    if not 0 <= p <= INT32_MAX:
        raise Invalid(f"pad {p} out of range")
    block = 4 if fmt == "bsr4x1" else 1
    if fmt == "dwcsr":
        if not group == cin == cout:
            raise Invalid("dwcsr needs group = cin = cout")
        cols = k * k
    else:
        if group != 1:
            raise Invalid("group != 1")
        cols = cin * k * k
    if cols > INT32_MAX:
        raise Invalid("cin * k * k overflows int32")
    if spec["as_input"]:
        raise Invalid("weights fed as graph inputs")
    if spec["inputs"] is not None:
        raise Invalid("rewired inputs")  # normalize() has already mapped the well-formed wirings
    arr = spec["inits"]
    for role, dt in (("indptr", np.int32), ("indices", np.int32), ("values", np.float32), ("bias", np.float32)):
        if arr[role].dtype != dt or arr[role].ndim != 1:
            raise Invalid(f"{role} dtype/rank")
    indptr, indices, values, bias = (arr[r] for r in ROLES)
    if len(bias) != cout:
        raise Invalid("bias length")
    brows = -(-cout // block)
    if len(indptr) != brows + 1 or indptr[0] != 0 or np.any(np.diff(indptr.astype(np.int64)) < 0):
        raise Invalid("indptr")
    nnz = len(indices)
    if indptr[-1] != nnz or len(values) != nnz * block:
        raise Invalid("lengths")
    if nnz and (indices.min() < 0 or indices.max() >= cols):
        raise Invalid("index out of range")
    if not (np.isfinite(values).all() and np.isfinite(bias).all()):
        raise Invalid("non-finite weight (refused: dense and depthwise kernels would disagree at padding)")
    x = spec["x"]
    if x.dtype != np.float32:
        raise Invalid("X dtype")
    if spec["x_decl"] is not None and list(spec["x_decl"]) != list(x.shape):
        raise Invalid("X declared shape")
    linear = x.ndim == 2
    if not (x.ndim == 4 or (linear and k == 1 and fmt != "dwcsr")) or x.shape[1] != cin:
        raise Invalid("X shape")
    if linear:
        out_shape = (x.shape[0], cout)
    else:
        oh, ow = ((d + 2 * p - k) // s + 1 for d in x.shape[2:])
        if oh < 1 or ow < 1:
            raise Invalid("input smaller than the kernel")
        out_shape = (x.shape[0], cout, oh, ow)
    if int(np.prod(out_shape, dtype=np.float64)) > MAX_OUT or (not linear and (x.shape[2] + 2 * p) * (x.shape[3] + 2 * p) > MAX_OUT):
        raise Invalid("output too large")
    r = spec["r"]
    if r is not None:
        if r.dtype != np.float32 or tuple(r.shape) != out_shape:
            raise Invalid("residual shape")
        if spec["r_decl"] is not None and list(spec["r_decl"]) != list(r.shape):
            raise Invalid("R declared shape")
    return dict(fmt=fmt, act=act, cin=cin, cout=cout, k=k, s=s, p=p, cols=cols, block=block, linear=linear,
                out_shape=out_shape)


def out_shape(spec: dict) -> tuple[int, ...] | None:
    saved = spec["r"]
    spec["r"] = None
    try:
        return geometry(spec)["out_shape"]
    except Invalid:
        return None
    finally:
        spec["r"] = saved


def _activate(v: np.ndarray, act: str, squash_nan: bool) -> np.ndarray:
    with np.errstate(all="ignore"):
        if act in ("relu", "relu6"):
            if squash_nan:  # SIMD max(v, 0) returns 0 for a NaN v, as MLAS/ORT's dense Relu do
                v = np.where(np.isnan(v), 0.0, v)
            v = np.where(v < 0, 0.0, v)  # keeps NaN (torch's relu)
            return np.where(v > 6, 6.0, v) if act == "relu6" else v
        if act == "swish":
            return v / (1.0 + np.exp(-v))
        if act == "hswish":
            return v * np.minimum(np.maximum(v + 3.0, 0.0), 6.0) / 6.0
        return v


def normalize(spec: dict) -> dict:
    """Map the well-formed rewirings to a plain spec: a residual left out by name ("") or X fed
    as its own residual; every other rewiring stays and is Invalid."""
    ins = spec["inputs"]
    if ins is None:
        return spec
    plain = ["X", *(f"{spec['name']}.{r}" for r in ROLES)]
    if ins[:5] == plain and (len(ins) == 5 or (len(ins) == 6 and ins[5] in ("", "X", "R"))):
        out = dict(spec, inputs=None)
        tail = ins[5] if len(ins) == 6 else ""
        out["r"] = {"": None, "X": spec["x"], "R": spec["r"]}[tail]
        out["r_decl"] = None if tail != "R" else spec["r_decl"]
        return out
    return spec


def reference(spec: dict) -> list[np.ndarray]:
    """Acceptable outputs (float64) of a well-formed layer; Invalid for a malformed one."""
    spec = normalize(spec)
    g = geometry(spec)
    indptr, indices, values, bias = (spec["inits"][r] for r in ROLES)
    x = spec["x"].astype(np.float64)
    n, k, s, p, block = x.shape[0], g["k"], g["s"], g["p"], g["block"]
    values = values.astype(np.float64)
    with np.errstate(all="ignore"):
        if g["linear"]:
            patches = x[:, :, None, None]  # [N, cols, 1, 1]
        else:
            oh, ow = g["out_shape"][2:]
            xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
            pt = np.empty((n, x.shape[1], k, k, oh, ow))
            for ky in range(k):
                for kx in range(k):
                    pt[:, :, ky, kx] = xp[:, :, ky:ky + s * (oh - 1) + 1:s, kx:kx + s * (ow - 1) + 1:s]
            patches = pt.reshape(n, x.shape[1], k * k, oh, ow) if g["fmt"] == "dwcsr" else \
                pt.reshape(n, x.shape[1] * k * k, oh, ow)
        pre = np.zeros((n, g["cout"], *patches.shape[-2:]))
        pres = [pre]
        if not np.isfinite(x).all():
            # Non-finite inputs: a kernel may multiply pruned taps (0 * NaN = NaN, as a dense conv
            # does: the depthwise kernels) or skip them (CSR): either is accepted per element.
            w = dense_weight(spec)[0].astype(np.float64)
            if g["fmt"] == "dwcsr":
                pres.append(np.einsum("ot,notw->now", w, patches.reshape(n, w.shape[0], k * k, -1)).reshape(pre.shape))
            else:
                pres.append(np.einsum("oc,nchw->nohw", w, patches))
        for b in range(len(indptr) - 1):
            lo, hi = int(indptr[b]), int(indptr[b + 1])
            idx = indices[lo:hi]
            for r in range(block):
                o = b * block + r
                if o >= g["cout"] or hi == lo:
                    continue
                v = values[lo * block + r:hi * block:block] if block > 1 else values[lo:hi]
                src = patches[:, o, idx] if g["fmt"] == "dwcsr" else patches[:, idx]
                pre[:, o] = np.einsum("j,njhw->nhw", v, src)
        res = spec["r"].astype(np.float64) if spec["r"] is not None else 0.0
        outs = []
        for pre in pres:
            pre = pre + bias.astype(np.float64)[None, :, None, None]
            if g["linear"]:
                pre = pre[:, :, 0, 0]
            outs.append(_activate(pre, g["act"], False) + res)
            if g["act"] in ("relu", "relu6") and np.isnan(pre).any():
                outs.append(_activate(pre, g["act"], True) + res)
    return outs


def matches(got: np.ndarray, refs: list[np.ndarray]) -> tuple[bool, str]:
    if got.dtype != np.float32:
        return False, f"output dtype {got.dtype}"
    ok = None
    for ref in refs:
        if got.shape != ref.shape:
            return False, f"output shape {got.shape}, expected {ref.shape}"
        g = got.astype(np.float64)
        fin = np.isfinite(ref)
        scale = max(1.0, float(np.abs(ref[fin]).max())) if fin.any() else 1.0
        with np.errstate(all="ignore"):
            close = (np.isnan(g) & np.isnan(ref)) | (g == ref) | \
                (np.isfinite(g) & fin & (np.abs(g - ref) <= 1e-4 * scale + 1e-4 * np.abs(ref)))
        ok = close if ok is None else ok | close
    if ok.all():
        return True, ""
    bad = np.argwhere(~ok)[0]
    return False, f"{int((~ok).sum())} of {ok.size} elements differ, first at {tuple(bad)}: got {got[tuple(bad)]}, " \
                  f"expected {refs[0][tuple(bad)]}"


# -- encodings for valid re-encodings -------------------------------------------------------------

def dense_weight(spec: dict) -> np.ndarray:
    g = geometry(spec)
    indptr, indices, values, _ = (spec["inits"][r] for r in ROLES)
    w = np.zeros((-(-g["cout"] // g["block"]) * g["block"], g["cols"]), np.float32)
    live = np.zeros(w.shape, bool)
    for b in range(len(indptr) - 1):
        for j in range(int(indptr[b]), int(indptr[b + 1])):
            for r in range(g["block"]):
                w[b * g["block"] + r, indices[j]] += values[j * g["block"] + r]
                live[b * g["block"] + r, indices[j]] = True
    return w[:g["cout"]], live[:g["cout"]]


def encode(fmt: str, w: np.ndarray, live: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    from st_deploy.graph.sparse import encode as enc
    arrays = enc(fmt if fmt != "dwcsr" else "csr", torch.from_numpy(w), torch.from_numpy(live.astype(np.float32)),
                 "dw" if fmt == "dwcsr" else "conv")
    return {"indptr": arrays.indptr, "indices": arrays.indices, "values": arrays.values}
