"""model.so is a plain TVM artifact: tvm.runtime.load_module + relax.VirtualMachine, nothing else.

Also: several artifacts (and the st_deploy kernel library) load side by side in one process;
the kernels inside model.so register no global functions that could collide.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from tests.artifacts import REL
from st_deploy.export.tvm import export_tvm
from st_deploy.graph.module import GraphModule

SHAPE = (1, 3, 32, 32)

# The README snippet, verbatim (run in a fresh interpreter that never imports st_deploy).
SNIPPET = """\
import numpy as np, tvm
from tvm import relax
lib = tvm.runtime.load_module("{out}/model.so")
vm = relax.VirtualMachine(lib, tvm.cpu())
y = vm["main"](tvm.runtime.tensor(np.load("{out}/x.npy"))).numpy()
"""


@pytest.fixture(scope="module")
def two_artifacts(every_op, tmp_path_factory):
    d = tmp_path_factory.mktemp("plain")
    return (export_tvm(every_op, "llvm", d / "a", input_shape=SHAPE),
            export_tvm(every_op, "llvm", d / "b", input_shape=SHAPE, plan="dense"))


def test_plain_tvm_snippet_in_a_fresh_process(every_op, two_artifacts):
    a, _ = two_artifacts
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    np.save(a / "x.npy", x.numpy())
    code = SNIPPET.format(out=a) + f"np.save('{a}/y.npy', y)\nimport sys\nassert 'st_deploy' not in sys.modules\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    with torch.no_grad():
        ref = GraphModule(every_op)(x).numpy()
    y = np.load(a / "y.npy")
    assert float(np.abs(y - ref).max() / np.abs(ref).max()) <= REL


def test_two_artifacts_and_kernel_library_in_one_process(two_artifacts):
    a, b = two_artifacts
    code = textwrap.dedent(f"""
        import numpy as np, tvm, os
        from tvm import relax
        lib_path = os.environ.get("ST_KERNELS_LIB")
        if lib_path:  # the Python kernel library registers the st_deploy.* globals itself
            import tvm_ffi; tvm_ffi.load_module(lib_path)
        x = tvm.runtime.tensor(np.ones({SHAPE}, np.float32))
        ys = [relax.VirtualMachine(tvm.runtime.load_module(p), tvm.cpu())["main"](x).numpy()
              for p in ("{a}/model.so", "{b}/model.so")]
        assert np.allclose(ys[0], ys[1], rtol=1e-5, atol=1e-6), np.abs(ys[0] - ys[1]).max()
    """)
    import os

    from st_deploy.kernels import library_path
    env = dict(os.environ)
    if library_path().is_file():
        env["ST_KERNELS_LIB"] = str(library_path())
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]


def test_runner_threads(two_artifacts):
    from st_deploy.errors import DeployError
    from st_deploy.runtime.runner import load
    a, _ = two_artifacts
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    y1, y2 = load(a, threads=1).run(x), load(a, threads=2).run(x)
    assert np.allclose(y1, y2, rtol=1e-5, atol=1e-6)
    with pytest.raises(DeployError, match="threads"):
        load(a, threads=0)
    with pytest.raises(DeployError, match="built for"):
        load(a).run(np.zeros((1, 3, 16, 16), np.float32))
