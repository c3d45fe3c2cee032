"""Finding and loading the compiled kernel library (st_deploy/_lib/libst_kernels.so)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from st_deploy.errors import DeployError

LIB_NAME = "libst_kernels.so"
# Points at a development build (e.g. build/kernels/libst_kernels.so) instead of the installed one.
ENV_LIB = "ST_KERNELS_LIB"


class KernelError(DeployError, ValueError):
    """A kernel call was given inconsistent arguments (shapes, dtypes, a malformed sparse layer)."""


def library_path() -> Path:
    """Path of the kernel library that `load()` uses: $ST_KERNELS_LIB, else the installed copy."""
    env = os.environ.get(ENV_LIB)
    if env:
        return Path(env)
    from st_deploy.runtime.libpath import candidates
    found = candidates(LIB_NAME)
    return next((p for p in found if p.is_file()), found[0])


@lru_cache(maxsize=1)
def load() -> Any:
    """The tvm-ffi module of the kernel library; loading it also registers the st_deploy.* globals."""
    path = library_path()
    if not path.is_file():
        raise DeployError(
            f"st_deploy kernel library not found at {path}: the package was installed without its "
            f"C++ part. Build it with `pip install --no-build-isolation .` from the st-deploy checkout "
            f"(needs cmake and a C++17 compiler), or set {ENV_LIB} to a built {LIB_NAME}."
        )
    import tvm_ffi

    try:
        return tvm_ffi.load_module(str(path))
    except Exception as e:  # a broken or foreign-arch build: say which file and why
        raise DeployError(f"cannot load the kernel library {path}: {e}") from e


def call(name: str, *args: Any) -> Any:
    """Calls a library function, turning its argument errors into KernelError."""
    fn = getattr(load(), name)
    try:
        return fn(*args)
    except ValueError as e:
        raise KernelError(str(e).strip()) from None
