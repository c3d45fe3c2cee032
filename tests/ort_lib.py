"""The st.sparse ONNX Runtime custom-op library, for the tests that run exported sparse models.

A missing library fails (never skips) wherever it must exist: in CI ($CI set, as .ci/run does),
when $ST_DEPLOY_ORT_LIB names it, and whenever the package's kernel library was built, since the
same CMake build (pip install .) always builds both. It only skips in a checkout whose native
libraries were never built at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def require_ort_library() -> Path:
    from st_deploy.runtime.libpath import candidates
    from st_deploy.runtime.ort import ENV_LIB, ort_library_path
    lib = ort_library_path()
    if lib.is_file():
        return lib
    msg = f"{lib} not built (pip install --no-build-isolation . or set {ENV_LIB})"
    kernels = [p for p in candidates("libst_kernels.so") if p.is_file()]
    if os.environ.get("CI"):
        pytest.fail(f"{msg}; CI={os.environ['CI']!r} requires it")
    if os.environ.get(ENV_LIB):
        pytest.fail(f"{msg}; {ENV_LIB} names it")
    if kernels:
        pytest.fail(f"{msg}, though {kernels[0]} was built by the same build")
    pytest.skip(msg)
