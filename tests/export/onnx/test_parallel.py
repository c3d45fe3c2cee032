"""Both ways of threading a SparseConv (st_kernels' pool, ORT's ParallelFor over channel slices)
compute the same as the torch graph, for every format and at batch > 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.graphs import _conv
from st_deploy.graph.ir import Graph, Node
from st_deploy.graph.module import GraphModule
from st_deploy.graph.shapes import infer_shapes
from st_deploy.export.onnx.sparse_ops import sparse_model
from st_deploy.runtime.ort import ort_session
from tests.ort_lib import require_ort_library
from st_deploy.plan import planned

FORMATS = {"pw": "csr", "dw": "csr", "c3": "bsr4x1", "pw2": "bsr4x1", "fc": "csr"}


def _big_graph() -> Graph:
    # Layers large enough (> 0.3 M multiply-adds) that the op really splits them.
    g = torch.Generator().manual_seed(3)
    fc_w = torch.randn(96, 66, generator=g) * 0.1
    fc_m = (torch.rand(fc_w.shape, generator=g) > 0.5).float()
    return Graph([
        _conv("pw", "x", 16, 64, 1, g, act="relu6"),
        _conv("dw", "pw", 64, 64, 3, g, groups=64, act="relu", sparsity=0.5),
        _conv("c3", "dw", 64, 66, 3, g, stride=2, act="none", sparsity=0.8),  # 66: a partial last block
        _conv("pw2", "c3", 66, 66, 1, g, act="hswish"),
        Node("res", "add", ["c3", "pw2"]),
        Node("pool", "global_avg_pool", ["res"]),
        Node("fc", "linear", ["pool"], {"act": "relu"},
             {"weight": fc_w * fc_m, "bias": torch.randn(96, generator=g) * 0.1, "mask": fc_m}),
    ], ["x"], ["fc"])


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Graph]:
    require_ort_library()
    graph = _big_graph()
    shapes = infer_shapes(graph, (1, 16, 56, 56))
    path = tmp_path_factory.mktemp("par") / "m.onnx"
    onnx.save(sparse_model(planned(graph, FORMATS), shapes), path)
    return path, graph


@pytest.mark.parametrize("parallel,threads", [("kernels", 1), ("kernels", 2), ("kernels", 3), ("ort", 2), ("ort", 3)])
@pytest.mark.parametrize("batch", [1, 3])
def test_threading_modes_agree(model, parallel: str, threads: int, batch: int) -> None:
    path, graph = model
    x = torch.randn(batch, 16, 56, 56, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        ref = GraphModule(graph)(x).numpy()
    sess = ort_session(path, threads=threads, parallel=parallel)
    got = sess.run(None, {"x": x.numpy()})[0]
    err = float(np.max(np.abs(ref - got)) / np.max(np.abs(ref)))
    assert err <= 1e-5, err
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("SparseConv") == 5 and "Add" not in ops  # res folded into pw2


def test_bad_parallel_mode(model) -> None:
    from st_deploy.errors import DeployError
    with pytest.raises(DeployError, match="parallel"):
        ort_session(model[0], threads=2, parallel="openmp")
