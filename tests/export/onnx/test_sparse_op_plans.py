"""st.sparse::SparseConv keeps one kernel plan per weight slice and input size: a model with free
H and W run at several sizes, in turn and again, on one and on two ORT threads (parts), must give
each size's own result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from st_deploy.graph.sparse import to_bsr4x1, to_csr


def one_node_model(fmt: str, w: np.ndarray, b: np.ndarray, pad: int) -> bytes:
    cout, cin, k, _ = w.shape
    ip, ix, v = (to_csr if fmt == "csr" else to_bsr4x1)(w.reshape(cout, -1))
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((ip, "indptr"), (ix, "indices"), (v.reshape(-1), "values"), (b, "bias"))]
    node = helper.make_node("SparseConv", ["X", "indptr", "indices", "values", "bias"], ["Y"],
                            name="conv", domain="st.sparse", format=fmt, activation="relu",
                            in_channels=cin, out_channels=cout, group=1, kernel_shape=[k, k],
                            strides=[1, 1], pads=[pad] * 4)
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, cin, "H", "W"])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    g = helper.make_graph([node], "plans", [x], [y], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("st.sparse", 1)])
    return m.SerializeToString()


@pytest.mark.parametrize("fmt", ["csr", "bsr4x1"])
@pytest.mark.parametrize("threads,parallel", [(1, None), (2, "ort")])
def test_sizes_in_turn_each_get_their_plan(tmp_path, fmt, threads, parallel):
    from st_deploy.runtime.ort import ort_session
    rng = np.random.default_rng(3)
    cout, cin, k = 24, 10, 3
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    if fmt == "bsr4x1":
        w *= np.repeat(rng.random((cout // 4, cin, k, k)) > 0.7, 4, axis=0)
    else:
        w *= rng.random(w.shape) > 0.7
    b = rng.standard_normal(cout).astype(np.float32)
    path = tmp_path / "m.onnx"
    path.write_bytes(one_node_model(fmt, w, b, 1))
    sess = ort_session(path, threads=threads, parallel=parallel)
    # 14 and 30 wide rows round up to whole vectors (the kx-split arrangement for CSR), 9 does not.
    sizes = [(12, 14), (9, 9), (20, 30), (12, 14), (9, 9)]
    for h, wd in sizes:
        x = rng.standard_normal((1, cin, h, wd)).astype(np.float32)
        want = F.relu(F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                               torch.from_numpy(b).double(), padding=1)).numpy()
        got = sess.run(None, {"X": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))
