"""CUDA kernels (kernels/cuda, libst_kernels_cuda.so).

1. Where nvcc is present, the library builds (cmake, cached in build/st_kernels_cuda, or the one
   $ST_KERNELS_CUDA_LIB names) and exports its symbols. Skipped with the reason where nvcc is missing.
2. On a CUDA device, every op against torch's dense conv on the GPU (float64 reference, same weights
   densified), and malformed patterns raise KernelError without ever faulting. Skipped with the reason
   ("no CUDA device") elsewhere.

Self-contained (no conftest fixtures, torch only: no numpy/scipy), so that it also runs with
`--noconftest` on a GPU machine that has only torch and tvm_ffi (benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "st_kernels_cuda"
ENV_LIB = "ST_KERNELS_CUDA_LIB"
EXPECTED_SYMBOLS = [
    "__tvm_ffi_cuda_conv2d_csr", "__tvm_ffi_cuda_conv2d_bsr", "__tvm_ffi_cuda_dwconv2d",
    "__tvm_ffi_cuda_dwconv2d_csr", "__tvm_ffi_cuda_linear_csr", "__tvm_ffi_cuda_linear_dense",
    "__tvm_ffi_cuda_validate_sparse", "__tvm_ffi_cuda_check", "st_cuda_conv2d_csr",
    "st_cuda_conv2d_bsr4x1", "st_cuda_dwconv2d_dense", "st_cuda_dwconv2d_csr", "st_cuda_linear_csr",
    "st_cuda_linear_dense", "st_cuda_validate_sparse", "st_cuda_check",
    "st_cuda_last_error",
]


def _cuda_module():
    """st_deploy.kernels.cuda, or the same file loaded on its own where st_deploy cannot import."""
    try:
        from st_deploy.kernels import cuda
        return cuda
    except Exception:  # e.g. the GPU machine lacks scipy/onnx: the module needs only torch + tvm_ffi
        path = REPO / "st_deploy" / "kernels" / "cuda.py"
        spec = importlib.util.spec_from_file_location("st_deploy_kernels_cuda", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for p in (os.environ.get("CUDACXX"), "/usr/local/cuda/bin/nvcc"):
        if p and Path(p).is_file():
            return p
    return None


@pytest.fixture(scope="session")
def cuda_lib_path() -> Path:
    env = os.environ.get(ENV_LIB)
    if env:
        if not Path(env).is_file():
            pytest.fail(f"{ENV_LIB}={env} is not a file")
        return Path(env)
    try:  # the copy `pip install .` built (CI): no second nvcc build
        installed = _cuda_module().library_path()
        if installed.is_file():
            return installed
    except Exception:
        pass
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA kernels are not built on this machine")
    if shutil.which("cmake") is None:
        pytest.skip("cmake not found")
    try:
        import tvm_ffi  # noqa: F401
    except ImportError:
        pytest.skip("apache-tvm-ffi is not installed (needed to build libst_kernels_cuda.so)")
    BUILD.mkdir(parents=True, exist_ok=True)
    built = BUILD / "libst_kernels_cuda.so"
    cfg = ["cmake", "-S", str(REPO / "kernels"), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release",
           f"-DPython_EXECUTABLE={sys.executable}", "-DST_KERNELS_CUDA=ON",
           f"-DCMAKE_CUDA_COMPILER={nvcc}"]
    bld = ["cmake", "--build", str(BUILD), f"-j{os.cpu_count() or 2}", "--target", "st_kernels_cuda"]
    import fcntl

    with open(BUILD / ".build.lock", "w") as lock:  # one build at a time in this folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        for cmd in ([] if (BUILD / "CMakeCache.txt").is_file() else [cfg]) + [bld]:
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                pytest.fail(f"building the CUDA kernels failed: {' '.join(cmd)}\n{r.stdout[-4000:]}\n"
                            f"{r.stderr[-4000:]}")
    return built


def test_library_builds_and_exports_symbols(cuda_lib_path: Path) -> None:
    assert cuda_lib_path.is_file()
    if shutil.which("nm") is None:
        pytest.skip("nm not found")
    r = subprocess.run(["nm", "-D", "--defined-only", str(cuda_lib_path)], capture_output=True,
                       text=True, check=True)
    names = {line.split()[-1] for line in r.stdout.splitlines() if line.strip()}
    missing = [s for s in EXPECTED_SYMBOLS if s not in names]
    assert not missing, f"{cuda_lib_path} does not export {missing}"
    # The CPU core's helpers it links must stay local (no interposition on libst_kernels.so).
    assert "st_last_error" not in names and "st_validate_sparse" not in names


# ------------------------------------------------------------------------------------------------
# GPU tests
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def K(cuda_lib_path: Path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (torch.cuda.is_available() is False)")
    try:
        import tvm_ffi  # noqa: F401
    except ImportError:
        pytest.skip("apache-tvm-ffi is not installed")
    os.environ[ENV_LIB] = str(cuda_lib_path)
    mod = _cuda_module()
    mod.load.cache_clear()
    ok, why = mod.available()
    if not ok:
        pytest.fail(f"CUDA kernels unavailable on a CUDA machine: {why}")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    mod.check()  # start clean
    return mod


DEV = "cuda"


def gen(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def sparse_weight(shape, sparsity: float, g: torch.Generator, block4: bool = False) -> torch.Tensor:
    w = torch.randn(shape, generator=g)
    if block4:
        cout = shape[0]
        keep = torch.rand(((cout + 3) // 4,) + tuple(shape[1:]), generator=g) >= sparsity
        keep = keep.repeat_interleave(4, dim=0)[:cout]
    else:
        keep = torch.rand(shape, generator=g) >= sparsity
    return (w * keep).to(DEV)


def ref(x, w, b, stride, pad, groups, act, residual=None):
    y = F.conv2d(x.double(), w.double(), None if b is None else b.double(), stride=stride,
                 padding=pad, groups=groups)
    y = {"none": y, "relu": F.relu(y), "relu6": F.relu6(y)}[act]
    if residual is not None:
        y = y + residual.double()
    return y.float()


def assert_close(got, want, rtol: float = 2e-4) -> None:
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale)


def epilogue(i: int):
    return ["none", "relu", "relu6"][i % 3], i % 2 == 0, i % 4 == 1


# (n, cin, cout, h, w, k, stride, pad)
CONV_SHAPES = [
    (1, 16, 32, 8, 8, 1, 1, 0),
    (3, 13, 7, 9, 11, 1, 1, 0),      # odd cout: BSR tail block, odd sizes, batch 3
    (2, 24, 40, 7, 7, 1, 2, 0),      # 1x1 stride 2
    (1, 8, 12, 10, 10, 1, 1, 1),     # 1x1 with padding (direct path)
    (1, 64, 64, 40, 40, 1, 1, 0),    # 1600 pixels: 128-wide blocks, 4 pixels per thread
    (1, 16, 16, 12, 12, 3, 1, 1),
    (3, 5, 9, 13, 7, 3, 2, 1),
    (1, 6, 10, 11, 11, 5, 1, 2),
    (2, 4, 6, 15, 9, 7, 2, 3),
    (1, 3, 5, 9, 9, 3, 1, 0),
    (8, 32, 48, 3, 3, 3, 1, 1),      # tiny planes
]
SPARSITIES = [0.0, 0.5, 0.9, 0.99, 1.0]


@pytest.mark.parametrize("fmt", ["csr", "bsr4x1"])
@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("si", range(len(CONV_SHAPES)))
def test_conv2d(K, si, sparsity, fmt) -> None:
    n, cin, cout, h, w, k, stride, pad = CONV_SHAPES[si]
    g = gen(1000 * si + int(sparsity * 100))
    act, with_bias, with_res = epilogue(si + int(sparsity * 100))
    wt = sparse_weight((cout, cin, k, k), sparsity, g, block4=fmt == "bsr4x1")
    x = torch.randn((n, cin, h, w), generator=g).to(DEV)
    b = torch.randn(cout, generator=g).to(DEV) if with_bias else None
    layer = K.SparseConv2dCUDA.from_dense(wt, b, stride=stride, padding=pad, act=act, fmt=fmt)
    want_res = None
    if with_res:
        want_res = torch.randn(layer.output_shape(x.shape), generator=g).to(DEV)
    y = layer(x, want_res)
    K.check()
    assert_close(y, ref(x, wt, b, stride, pad, 1, act, want_res))


@pytest.mark.parametrize("fmt", ["csr", "bsr4x1"])
@pytest.mark.parametrize("act", ["none", "relu", "relu6"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_res", [False, True])
def test_conv2d_epilogues(K, fmt, act, with_bias, with_res) -> None:
    g = gen(7)
    wt = sparse_weight((10, 12, 3, 3), 0.7, g, block4=fmt == "bsr4x1")
    x = torch.randn((2, 12, 9, 9), generator=g).to(DEV) * 3
    b = torch.randn(10, generator=g).to(DEV) * 3 if with_bias else None
    r = torch.randn((2, 10, 9, 9), generator=g).to(DEV) if with_res else None
    fn = K.conv2d_csr if fmt == "csr" else K.conv2d_bsr4x1
    arrays = K.to_csr(wt.reshape(10, -1)) if fmt == "csr" else K.to_bsr4x1(wt.reshape(10, -1))
    y = fn(x, *arrays, b, r, out_channels=10, kernel_size=3, stride=1, padding=1, act=act)
    K.check()
    assert_close(y, ref(x, wt, b, 1, 1, 1, act, r))


@pytest.mark.parametrize("fmt", ["csr", "bsr4x1"])
def test_conv2d_empty_rows_and_zero_layer(K, fmt) -> None:
    g = gen(11)
    wt = sparse_weight((9, 8, 1, 1), 0.3, g)
    wt[::2] = 0  # every other output channel empty (whole 4-blocks empty for bsr when rows 0-3)
    wt[0:4] = 0
    x = torch.randn((2, 8, 5, 6), generator=g).to(DEV)
    b = torch.randn(9, generator=g).to(DEV)
    for w_ in (wt, torch.zeros_like(wt)):
        layer = K.SparseConv2dCUDA.from_dense(w_, b, act="relu", fmt=fmt)
        y = layer(x)
        K.check()
        assert_close(y, ref(x, w_, b, 1, 0, 1, "relu"))


def test_conv2d_out_argument_and_stream(K) -> None:
    g = gen(12)
    wt = sparse_weight((16, 8, 3, 3), 0.8, g)
    x = torch.randn((2, 8, 20, 20), generator=g).to(DEV)
    layer = K.SparseConv2dCUDA.from_dense(wt, padding=1)
    s = torch.cuda.Stream()
    out = torch.empty((2, 16, 20, 20), device=DEV)
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        layer(x, out=out)
        z = out * 2  # same stream: ordered after our kernel only if it ran on s
    s.synchronize()
    K.check()
    assert_close(z, 2 * ref(x, wt, None, 1, 1, 1, "none"))


# (n, c, h, w)
DW_SHAPES = [(1, 16, 56, 56), (3, 8, 13, 9), (2, 6, 40, 24), (1, 4, 70, 70)]


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("si", range(len(DW_SHAPES)))
def test_dwconv2d(K, si, k, stride, fmt) -> None:
    n, c, h, w = DW_SHAPES[si]
    g = gen(100 * si + 10 * k + stride)
    sparsity = [0.0, 0.5, 0.9, 1.0][(si + k + stride) % 4] if fmt == "csr" else 0.3
    act, with_bias, with_res = epilogue(si + k + stride)
    wt = sparse_weight((c, 1, k, k), sparsity, g)
    x = torch.randn((n, c, h, w), generator=g).to(DEV)
    b = torch.randn(c, generator=g).to(DEV) if with_bias else None
    pad = (k - 1) // 2
    layer = K.SparseConv2dCUDA.from_dense(wt, b, stride=stride, padding=pad, groups=c, act=act, fmt=fmt)
    r = torch.randn(layer.output_shape(x.shape), generator=g).to(DEV) if with_res else None
    y = layer(x, r)
    K.check()
    assert_close(y, ref(x, wt, b, stride, pad, c, act, r))


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("k,stride,pad,hw", [(3, 1, 0, (30, 33)), (4, 1, 1, (32, 32)), (3, 3, 1, (50, 50)),
                                             (1, 1, 0, (20, 20)), (5, 2, 0, (9, 9)), (7, 4, 3, (64, 64))])
def test_dwconv2d_other_geometry(K, fmt, k, stride, pad, hw) -> None:
    g = gen(k * 10 + stride)
    wt = sparse_weight((5, 1, k, k), 0.4, g)
    x = torch.randn((2, 5) + hw, generator=g).to(DEV)
    layer = K.SparseConv2dCUDA.from_dense(wt, None, stride=stride, padding=pad, groups=5, fmt=fmt)
    y = layer(x)
    K.check()
    assert_close(y, ref(x, wt, None, stride, pad, 5, "none"))


@pytest.mark.parametrize("fmt", ["csr", "dense"])
@pytest.mark.parametrize("sparsity", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("n,fin,fout", [(1, 64, 10), (3, 100, 37), (5, 1600, 1000), (8, 1280, 1000)])
@pytest.mark.parametrize("act", ["none", "relu6"])
def test_linear(K, n, fin, fout, sparsity, act, fmt) -> None:
    # fin = 100 and 1600 take the 16-byte path of the dense kernel, 1280 too; n = 5 and 8 span
    # two groups of samples
    g = gen(fin + fout)
    w = sparse_weight((fout, fin), sparsity, g)
    b = torch.randn(fout, generator=g).to(DEV)
    x = torch.randn((n, fin), generator=g).to(DEV)
    layer = K.SparseLinearCUDA.from_dense(w, b, act=act, fmt=fmt)
    assert layer.fmt == fmt
    y = layer(x)
    K.check()
    want = x.double() @ w.double().T + b.double()
    want = {"none": want, "relu6": F.relu6(want)}[act].float()
    assert_close(y, want)


@pytest.mark.parametrize("fin", [37, 64])
def test_linear_dense_unaligned_rows_and_no_bias(K, fin) -> None:
    # fin = 37: rows of x and W off 16 bytes (scalar path); a sliced x whose start is off 16 bytes
    g = gen(fin)
    w = torch.randn((21, fin), generator=g).to(DEV)
    xb = torch.randn((2 * fin + 1,), generator=g).to(DEV)
    x = xb[1:].reshape(2, fin)
    y = K.linear_dense(x, w, None, act="relu")
    K.check()
    assert_close(y, F.relu(x.double() @ w.double().T).float())


def test_linear_dense_rejects_inconsistent_shapes(K) -> None:
    x = torch.randn((2, 16), device=DEV)
    with pytest.raises(K.KernelError, match="weight"):
        K.linear_dense(x, torch.randn((8, 15), device=DEV))
    with pytest.raises(K.KernelError, match="bias"):
        K.linear_dense(x, torch.randn((8, 16), device=DEV), torch.randn(7, device=DEV))
    with pytest.raises(K.KernelError, match="act"):
        K.linear_dense(x, torch.randn((8, 16), device=DEV), act="gelu")


# ------------------------------------------------------------------------------------------------
# malformed patterns: a clear KernelError, never a crash or an out-of-bounds access
# ------------------------------------------------------------------------------------------------

def _corrupt(arrays, how: str, cols_bad: int):
    indptr, indices, values = (a.clone() for a in arrays)
    nnz = indices.numel()
    if how == "index_high":
        indices[nnz // 2] = cols_bad
    elif how == "index_negative":
        indices[-1] = -7
    elif how == "indptr_past_nnz":
        indptr[1] = nnz + 1000
    elif how == "indptr_negative":
        indptr[1] = -3
    elif how == "indptr_decreasing":
        indptr[2] = 0
        indptr[1] = max(1, int(indptr[3]))
    return indptr, indices, values


HOWS = ["index_high", "index_negative", "indptr_past_nnz", "indptr_negative", "indptr_decreasing"]


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("op", ["conv_csr", "conv_bsr", "conv3_csr", "dw_csr", "linear"])
def test_malformed_pattern_raises(K, op, how) -> None:
    g = gen(5)
    x4 = torch.randn((2, 8, 9, 9), generator=g).to(DEV)
    if op == "linear":
        w = sparse_weight((12, 30), 0.3, g)
        arrays = K.to_csr(w)
        bad = _corrupt(arrays, how, 30)
        run = lambda a: K.linear_csr(torch.randn((3, 30), device=DEV), *a, out_features=12)  # noqa: E731
        rows, cols, br = 12, 30, 1
    elif op == "dw_csr":
        w = sparse_weight((8, 1, 3, 3), 0.3, g)
        arrays = K.to_csr(w.reshape(8, 9))
        bad = _corrupt(arrays, how, 9)
        run = lambda a: K.dwconv2d_csr(x4, *a, kernel_size=3)  # noqa: E731
        rows, cols, br = 8, 9, 1
    else:
        k = 3 if op == "conv3_csr" else 1
        w = sparse_weight((12, 8, k, k), 0.3, g)
        fmt_bsr = op == "conv_bsr"
        arrays = (K.to_bsr4x1 if fmt_bsr else K.to_csr)(w.reshape(12, -1))
        bad = _corrupt(arrays, how, 8 * k * k)
        fn = K.conv2d_bsr4x1 if fmt_bsr else K.conv2d_csr
        run = lambda a: fn(x4, *a, out_channels=12, kernel_size=k, padding=k // 2)  # noqa: E731
        rows, cols, br = 12, 8 * k * k, 4 if fmt_bsr else 1
    # the one-time host-side validation catches it
    with pytest.raises(K.KernelError):
        K.validate_sparse(bad[0], bad[1], rows, cols, br, bad[2].numel())
    # run anyway: the kernel skips the fault and records it; check() reports it once
    run(bad)
    with pytest.raises(K.KernelError, match="malformed sparse pattern"):
        K.check()
    K.check()  # consumed
    # the next call after a (synchronized) faulty one raises at its start, without a sync
    run(bad)
    torch.cuda.synchronize()
    assert K.error_pending()
    with pytest.raises(K.KernelError, match="malformed sparse pattern"):
        run(arrays)
    # and everything works again afterwards
    run(arrays)
    K.check()


def test_host_checked_errors(K) -> None:
    g = gen(6)
    w = sparse_weight((12, 8, 1, 1), 0.3, g)
    ip, ix, v = K.to_csr(w.reshape(12, -1))
    x = torch.randn((1, 8, 4, 4), generator=g).to(DEV)
    with pytest.raises(K.KernelError, match="indptr has"):
        K.conv2d_csr(x, ip[:-1], ix, v, out_channels=12, kernel_size=1)
    with pytest.raises(K.KernelError, match="values has"):
        K.conv2d_csr(x, ip, ix, v[:-1], out_channels=12, kernel_size=1)
    with pytest.raises(K.KernelError):
        K.conv2d_csr(x.cpu(), ip, ix, v, out_channels=12, kernel_size=1)
    with pytest.raises(K.KernelError, match="must be on a CUDA device"):
        K.call("cuda_conv2d_csr", x, ip.cpu(), ix, v, None, None, 1, 1, 1, 0, 0,
               torch.empty((1, 12, 4, 4), device=DEV))
    with pytest.raises(K.KernelError, match="out has shape"):
        K.conv2d_csr(x, ip, ix, v, out_channels=12, kernel_size=1, out=torch.empty((1, 12, 5, 4), device=DEV))
    K.check()
