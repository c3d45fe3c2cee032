"""Hostile sparse ONNX models: every mutated st.sparse::SparseConv ends in a clear error or a
correct result, never a crash, a hang or a silent wrong answer.

The SparseConv nodes of a small exported model (tests/graphs.every_op_graph: CSR, 4x1 BSR,
depthwise CSR, linear, fused residuals, stride 2, every activation) are cut out one at a time as
one-node models, with their real inputs captured from a run of the whole model. Hypothesis
mutates them (indices, indptr, array lengths, geometry attributes, schema, dtypes and wiring,
residuals, NaN/Inf); each case runs in a reusable worker process with a time bound (tests/fuzz/
isolate.py), so a segfault is counted as a "crash" instead of killing pytest. Outcomes:

  clear error  a malformed layer: session creation or run failed with a message naming the node / op
  correct      a valid layer ran, and the output matches a float64 reference over the stored entries
  crash/hang   the worker died / did not answer in time
  wrong        ran, but the spec was malformed (must have been refused) or the output differs; or
               refused a layer the reference computes (unsorted or duplicate indices, empty rows,
               extra attributes, another valid stride/padding, ...)
  unclear      failed with a message that names neither the node nor SparseConv

ST_DEPLOY_FUZZ_CASES sets the examples per category (default 40).
"""

from __future__ import annotations

import collections
import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import CASES
from tests.fuzz.isolate import OutcomeTally, Worker
from tests.ort_lib import require_ort_library
from tests.fuzz.sparse_onnx import (ACTS, MAX_OUT, ROLES, Invalid, build, capture, dense_weight, encode, geometry,
                                    matches, out_shape, reference, run_model)

SECONDS = 20  # per case; a well-formed case takes milliseconds
TALLY = OutcomeTally()


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict:
    require_ort_library()
    from st_deploy.export import export
    from tests.graphs import every_op_graph
    out = export(every_op_graph(), out=tmp_path_factory.mktemp("sparse") / "o", input_shape=(1, 3, 32, 32),
                 format="sparse")
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    return capture(str(out / "model.sparse.onnx"), x)


@pytest.fixture(scope="module")
def worker():
    w = Worker(run_model)
    yield w
    w.close()


def teardown_module() -> None:
    print("\nsparse ONNX fuzz (per category):\n" + TALLY.table())
    for f in dict.fromkeys(TALLY.failures):  # in order, without repeats (hypothesis replays failing cases)
        print("  FAIL", f[:600])


# -- mutations: each takes (spec, draw) and edits spec in place ----------------------------------

def _pos(draw, n: int) -> int:
    return draw(st.integers(0, max(0, n - 1)))


def _rows_with(spec: dict, at_least: int) -> list[int]:
    ip = spec["inits"]["indptr"]
    return [b for b in range(len(ip) - 1) if ip[b + 1] - ip[b] >= at_least]


def _cols(spec: dict) -> int:
    a = spec["attrs"]
    k = a["kernel_shape"][0]
    return k * k if a["format"] == "dwcsr" else a["in_channels"] * k * k


def _block(spec: dict) -> int:
    return 4 if spec["attrs"]["format"] == "bsr4x1" else 1


def _set_index(spec, draw, value):
    ix = spec["inits"]["indices"]
    if len(ix):
        ix[_pos(draw, len(ix))] = value


def m_index_oob(spec, draw):
    _set_index(spec, draw, _cols(spec) + draw(st.sampled_from([0, 1, 7, 2 ** 31 - 1 - _cols(spec)])))


def m_index_negative(spec, draw):
    _set_index(spec, draw, draw(st.sampled_from([-1, -2, -_cols(spec), -2 ** 31])))


def m_index_in_range(spec, draw):  # valid: another live column (may duplicate one)
    _set_index(spec, draw, draw(st.integers(0, _cols(spec) - 1)))


def m_index_unsorted(spec, draw):  # valid: the kernels must not assume ascending columns
    rows = _rows_with(spec, 2)
    if not rows:
        return
    b = draw(st.sampled_from(rows))
    ip, bl = spec["inits"]["indptr"], _block(spec)
    lo, hi = int(ip[b]), int(ip[b + 1])
    perm = np.array(draw(st.permutations(list(range(hi - lo)))))
    spec["inits"]["indices"][lo:hi] = spec["inits"]["indices"][lo:hi][perm]
    vals = spec["inits"]["values"][lo * bl:hi * bl].reshape(-1, bl)
    spec["inits"]["values"][lo * bl:hi * bl] = vals[perm].reshape(-1)


def m_index_duplicate(spec, draw):  # valid: a repeated column adds both values
    rows = _rows_with(spec, 2)
    if rows:
        b = draw(st.sampled_from(rows))
        lo = int(spec["inits"]["indptr"][b])
        spec["inits"]["indices"][lo + 1] = spec["inits"]["indices"][lo]


def m_indptr_decrease(spec, draw):
    ip = spec["inits"]["indptr"]
    i = draw(st.integers(1, len(ip) - 1))
    ip[i] = ip[i - 1] - draw(st.integers(1, 5))


def m_indptr_start(spec, draw):
    spec["inits"]["indptr"][0] = draw(st.sampled_from([1, -1, 2 ** 31 - 1, -2 ** 31]))


def m_indptr_end(spec, draw):
    spec["inits"]["indptr"][-1] += draw(st.sampled_from([-1, 1, 4, 2 ** 30]))


def m_indptr_length(spec, draw):
    ip = spec["inits"]["indptr"]
    spec["inits"]["indptr"] = draw(st.sampled_from([ip[:-1], np.append(ip, ip[-1]), ip[:1], ip[:0],
                                                    np.append(np.int32(0), ip)]))


def m_indptr_huge(spec, draw):
    ip = spec["inits"]["indptr"]
    ip[draw(st.integers(1, len(ip) - 1))] = draw(st.sampled_from([2 ** 31 - 1, 2 ** 30, -2 ** 31]))


def m_indptr_redistribute(spec, draw):  # valid: same entries, different (monotone) row split, empty rows
    ip = spec["inits"]["indptr"]
    nnz = int(ip[-1])
    mids = sorted(draw(st.lists(st.integers(0, nnz), min_size=len(ip) - 2, max_size=len(ip) - 2)))
    spec["inits"]["indptr"] = np.array([0, *mids, nnz], np.int32)


def m_values_length(spec, draw):
    v = spec["inits"]["values"]
    spec["inits"]["values"] = draw(st.sampled_from([v[:-1], np.append(v, np.float32(1)), v[:0], v[:len(v) // 2],
                                                    np.concatenate([v, v])]))


def m_indices_length(spec, draw):
    ix = spec["inits"]["indices"]
    spec["inits"]["indices"] = draw(st.sampled_from([ix[:-1], np.append(ix, np.int32(0)), ix[:0]]))


def m_all_empty(spec, draw):  # valid: no stored weight at all, y = act(bias) (+ residual)
    rows = len(spec["inits"]["indptr"]) - 1
    spec["inits"].update(indptr=np.zeros(rows + 1, np.int32), indices=np.zeros(0, np.int32),
                         values=np.zeros(0, np.float32))


def m_bias_length(spec, draw):
    b = spec["inits"]["bias"]
    spec["inits"]["bias"] = draw(st.sampled_from([b[:-1], np.append(b, np.float32(0)), b[:0]]))


def m_array_rank(spec, draw):
    role = draw(st.sampled_from(ROLES))
    a = spec["inits"][role]
    spec["inits"][role] = draw(st.sampled_from([a.reshape(-1, 1), a.reshape(1, -1), a[:1].reshape(())
                                                if len(a) else a.reshape(0, 1)]))


def _attr_value(draw, old):
    big = [2 ** 31, 2 ** 31 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 62, -2 ** 63, -1, 0]
    if isinstance(old, list):
        v = old[0]
        return draw(st.sampled_from([[0] * len(old), [-1] * len(old), [v, v + 1] + [v] * (len(old) - 2),
                                     [v] * (len(old) - 1), [v] * (len(old) + 1), [],
                                     [2 ** 32 + v] * len(old), [2 ** 31 + v] * len(old), [65] * len(old),
                                     [2 ** 20] * len(old), [-2 ** 63] * len(old)]))
    return draw(st.sampled_from(big + [old + 1, old - 1, old + 2 ** 32, old + 2 ** 33]))


def m_geometry_hostile(spec, draw):
    key = draw(st.sampled_from(["in_channels", "out_channels", "group", "kernel_shape", "strides", "pads"]))
    spec["attrs"][key] = _attr_value(draw, spec["attrs"][key])


def m_geometry_valid(spec, draw):  # valid: another stride / padding (the op must follow it)
    key = draw(st.sampled_from(["strides", "pads"]))
    n = len(spec["attrs"][key])
    spec["attrs"][key] = [draw(st.integers(1, 4) if key == "strides" else st.integers(0, 4))] * n
    _refit_residual(spec, draw)


def m_x_shape(spec, draw):
    x = spec["x"]
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    if x.ndim == 4:
        n, c, h, w = x.shape
        shape = draw(st.sampled_from([(2, c, h, w), (3, c, h + 1, w + 3), (n, c, 1, 1), (n, c, 1, w), (0, c, h, w),
                                      (n, c + 1, h, w), (n, c - 1, h, w), (n, c, h), (n, c, h, w, 1), (n, c, 0, w),
                                      (n, c * h * w)]))
    else:
        n, c = x.shape
        shape = draw(st.sampled_from([(4, c), (0, c), (n, c + 1), (n, c, 1, 1), (n, c, 3, 3), (c,)]))
    spec["x"] = rng.standard_normal(shape).astype(np.float32)
    _refit_residual(spec, draw)


def _refit_residual(spec, draw):
    """A geometry change changes the output shape: give a residual the new shape."""
    if spec["r"] is not None:
        shape = out_shape(spec)
        if shape is not None and int(np.prod(shape)) <= MAX_OUT:
            spec["r"] = np.random.default_rng(draw(st.integers(0, 2 ** 16))).standard_normal(shape).astype(np.float32)


BAD_FORMATS = ["CSR", "", "bsr", "bsr4x2", "dense", "csr\x00", "csr ", "dwcsr2", "x" * 300]
BAD_ACTS = ["gelu", "", "RELU", "swish ", "relu\x00x", "sigmoid", "hswish6"]


def m_drop_attr(spec, draw):
    key = draw(st.sampled_from(sorted(spec["attrs"])))
    del spec["attrs"][key]


def m_extra_attr(spec, draw):  # valid: an attribute the op does not know is ignored
    spec["attrs"][draw(st.sampled_from(["dilations", "alpha", "zzz"]))] = draw(st.sampled_from([1, [1, 1], "x", 0.5]))


def m_attr_type(spec, draw):
    key = draw(st.sampled_from(sorted(spec["attrs"])))
    spec["attrs"][key] = draw(st.sampled_from([1.5, "3", [1.0, 2.0], 7, [3, 3], ["a", "b"]]))


def m_bad_strings(spec, draw):
    if draw(st.booleans()):
        spec["attrs"]["format"] = draw(st.sampled_from(BAD_FORMATS + ["csr", "bsr4x1", "dwcsr"]))
    else:
        spec["attrs"]["activation"] = draw(st.sampled_from(BAD_ACTS))


def m_reencode(spec, draw):  # valid: the same weight in another format, another activation
    w, live = dense_weight(spec)
    fmt = spec["attrs"]["format"]
    if fmt != "dwcsr":
        fmt = draw(st.sampled_from(["csr", "bsr4x1"]))
    spec["inits"].update(encode(fmt, w, live))
    spec["attrs"]["format"] = fmt
    spec["attrs"]["activation"] = draw(st.sampled_from(ACTS))


def m_dtype(spec, draw):
    role = draw(st.sampled_from(ROLES))
    dt = draw(st.sampled_from([np.int64, np.float64, np.float32, np.int16, np.uint32, np.float16, np.int32, np.uint8]))
    spec["inits"][role] = spec["inits"][role].astype(dt)


def m_x_dtype(spec, draw):
    spec["x"] = spec["x"].astype(draw(st.sampled_from([np.float64, np.float16, np.int32])))


def m_weights_as_inputs(spec, draw):
    spec["as_input"] = draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=4, unique=True))


def m_rewire(spec, draw):
    name = spec["name"]
    full = ["X", *(f"{name}.{r}" for r in ROLES)]
    if spec["r"] is not None:
        full.append("R")
    spec["inputs"] = draw(st.sampled_from([
        full[:4], full[:1], [*full[:5], ""], [*full[:5], "X"] if spec["x"].ndim == 4 and spec["r"] is None else full[:3],
        [*full[:5], "R" if spec["r"] is not None else "X", "X"], ["", *full[1:]], [full[0], "", *full[2:]],
        [*full[:4], "", *full[5:]], [full[0], full[2], full[1], *full[3:]]]))


def m_residual_shape(spec, draw):
    shape = out_shape(spec)
    if shape is None:
        return
    shape = list(shape)
    i = draw(st.integers(0, len(shape) - 1))
    shape[i] += draw(st.sampled_from([1, -1])) if shape[i] > 1 else 1
    choice = draw(st.sampled_from(["dim", "rank", "scalar", "dtype", "decl"]))
    rng = np.random.default_rng(0)
    if choice == "dim":
        spec["r"] = rng.standard_normal(shape).astype(np.float32)
    elif choice == "rank":
        spec["r"] = rng.standard_normal(shape[:-1] or [1]).astype(np.float32)
    elif choice == "scalar":
        spec["r"] = np.array(1.0, dtype=np.float32)
    elif choice == "dtype":
        spec["r"] = rng.standard_normal(out_shape(spec)).astype(np.float64)
    else:  # declared with unknown dims, fed with the wrong shape: only our op can catch it
        spec["r"] = rng.standard_normal(shape).astype(np.float32)
        spec["r_decl"] = [None] * len(shape)
        spec["r_decl"] = ["d%d" % j for j in range(len(shape))]


def m_residual_add_remove(spec, draw):  # valid
    if spec["r"] is not None:
        spec["r"] = None
    else:
        shape = out_shape(spec)
        if shape is not None:
            spec["r"] = np.random.default_rng(1).standard_normal(shape).astype(np.float32)


SPECIALS = [np.nan, np.inf, -np.inf]


def _poison(a: np.ndarray, draw) -> np.ndarray:
    a = a.copy()
    flat = a.reshape(-1)
    for _ in range(draw(st.integers(1, 3))):
        if flat.size:
            flat[_pos(draw, flat.size)] = draw(st.sampled_from(SPECIALS))
    return a


def m_nonfinite(spec, draw):
    where = draw(st.sampled_from(["values", "bias", "x", "r", "x"]))
    if where in ("values", "bias"):
        spec["inits"][where] = _poison(spec["inits"][where], draw)
    elif where == "x":
        spec["x"] = _poison(spec["x"], draw)
    elif spec["r"] is not None:
        spec["r"] = _poison(spec["r"], draw)
    spec["attrs"]["activation"] = draw(st.sampled_from(ACTS))


CATEGORIES = {
    "indices": [m_index_oob, m_index_negative, m_index_in_range, m_index_unsorted, m_index_duplicate],
    "indptr": [m_indptr_decrease, m_indptr_start, m_indptr_end, m_indptr_length, m_indptr_huge,
               m_indptr_redistribute],
    "lengths": [m_values_length, m_indices_length, m_all_empty, m_bias_length, m_array_rank],
    "geometry": [m_geometry_hostile, m_geometry_hostile, m_geometry_valid, m_x_shape],
    "attributes": [m_drop_attr, m_extra_attr, m_attr_type, m_bad_strings, m_reencode],
    "dtypes-wiring": [m_dtype, m_x_dtype, m_weights_as_inputs, m_rewire],
    "residual": [m_residual_shape, m_residual_add_remove],
    "nan-inf": [m_nonfinite],
}


# Mutations that keep the layer well formed (the reference computes it): each must produce
# correct results, so an op that refuses valid layers, or a reference that calls everything
# malformed, cannot pass.
VALID_BY_DESIGN = {m.__name__ for m in (m_index_in_range, m_index_unsorted, m_index_duplicate,
                                        m_indptr_redistribute, m_all_empty, m_geometry_valid, m_extra_attr,
                                        m_reencode, m_residual_add_remove)}


def classify(spec: dict, result: tuple[str, object]) -> tuple[str, str]:
    kind, payload = result
    try:
        refs = reference(spec)
        why = ""
    except Invalid as e:
        refs, why = None, str(e)
    if kind == "crash":
        return "crash", f"worker died with exit code {payload}"
    if kind == "hang":
        return "hang", f"no answer in {SECONDS}s"
    if kind == "raised":
        return "crash", f"harness error in the worker: {payload}"
    status, out = payload
    if status in ("create-error", "run-error"):
        msg = str(out)
        if refs is not None:  # the float64 reference computes this layer: refusing it is wrong
            return "wrong", f"refused a valid layer: {status}: {msg[:300]!r}"
        if msg and (f"'{spec['name']}'" in msg or f"({spec['name']})" in msg or "SparseConv" in msg):
            return "clear error", ""
        return "unclear error", f"{status}: {msg[:300]!r}"
    if refs is None:
        return "wrong", f"malformed layer ({why}) ran and returned shape {getattr(out, 'shape', None)}"
    ok, detail = matches(np.asarray(out), refs)
    return ("correct", "") if ok else ("wrong", detail)


def _describe(spec: dict, base: dict) -> str:
    diff = [f"{k}={v!r}" for k, v in spec["attrs"].items() if base["attrs"].get(k) != v]
    diff += [f"-{k}" for k in base["attrs"] if k not in spec["attrs"]]
    for r in ROLES:
        a, b = spec["inits"][r], base["inits"][r]
        if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
            diff.append(f"{r}: {a.dtype}{list(a.shape)}")
    for key in ("as_input", "inputs", "r_decl", "x_decl"):
        if spec[key] not in (None, []):
            diff.append(f"{key}={spec[key]!r}")
    diff.append(f"x {spec['x'].dtype}{list(spec['x'].shape)}")
    if spec["r"] is not None:
        diff.append(f"r {spec['r'].dtype}{list(spec['r'].shape)}")
    return f"node {spec['name']} [{base['attrs']['format']}]: " + ", ".join(diff)


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_sparse_onnx_mutations_never_crash(specs, worker, category):
    names = sorted(specs)
    per_mutation: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    @settings(max_examples=CASES, deadline=None, derandomize=True, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data):
        base = specs[data.draw(st.sampled_from(names), label="node")]
        spec = copy.deepcopy(base)
        mutate = data.draw(st.sampled_from(CATEGORIES[category]), label="mutation")
        mutate(spec, data.draw)
        threads = data.draw(st.sampled_from([1, 2]), label="threads")
        parallel = data.draw(st.sampled_from(["ort", "kernels"]), label="parallel")
        model, feeds = build(spec)
        outcome, detail = classify(spec, worker.run((model, feeds, threads, parallel), SECONDS))
        TALLY.add(category, outcome, f"{mutate.__name__} {_describe(spec, base)} (threads={threads}, "
                                     f"{parallel}): {detail}")
        per_mutation[mutate.__name__][outcome] += 1
        assert outcome in ("clear error", "correct"), TALLY.failures[-1]

    one()
    n = TALLY.counts[category]
    print(f"\nsparse-onnx {category}: {sum(n.values())} tried, " + ", ".join(f"{k} {v}" for k, v in sorted(n.items())))
    print("  per mutation: " + "; ".join(f"{m} {dict(c)}" for m, c in sorted(per_mutation.items())))
    assert n["crash"] == n["hang"] == n["wrong"] == n["unclear error"] == 0
    # Counts, not just the absence of failures: every category ran hostile layers, and each with
    # valid mutations ran valid ones (dtypes-wiring has none by design: nothing there is valid).
    assert n["clear error"] > 0, dict(n)
    if VALID_BY_DESIGN & {m.__name__ for m in CATEGORIES[category]}:
        assert n["correct"] > 0, dict(n)
    for name in VALID_BY_DESIGN & set(per_mutation):
        assert per_mutation[name]["correct"] > 0, f"{name} never gave a correct result: {dict(per_mutation[name])}"


def test_unmutated_nodes_are_correct(specs, worker):
    """The harness's own baseline: every captured node, as exported, runs and matches the reference."""
    for spec in specs.values():
        for threads, parallel in ((1, "ort"), (2, "ort"), (2, "kernels")):
            model, feeds = build(spec)
            outcome, detail = classify(spec, worker.run((model, feeds, threads, parallel), SECONDS))
            assert outcome == "correct", f"{spec['name']} threads={threads} {parallel}: {outcome} {detail}"


def test_geometry_reference_rejects_garbage(specs):
    spec = copy.deepcopy(next(iter(specs.values())))
    spec["attrs"]["strides"] = [0, 0]
    with pytest.raises(Invalid):
        geometry(spec)
