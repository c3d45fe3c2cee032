"""Where the compiled libraries (kernels, ONNX Runtime custom ops) live.

`pip install .` puts them in st_deploy/_lib inside site-packages. When the Python sources
are imported from a source checkout (running the tests from the repository root), that
folder is absent next to them, so we also look where the installed distribution put it.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from ..errors import DeployError

# st_deploy/ (this file is st_deploy/runtime/libpath.py): pip install puts the libraries in its _lib
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def candidates(name: str) -> list[Path]:
    found = [PACKAGE_DIR / "_lib" / name]
    try:
        dist = metadata.distribution("st-deploy")
    except metadata.PackageNotFoundError:
        return found
    installed = Path(str(dist.locate_file(f"st_deploy/_lib/{name}")))
    if installed not in found:
        found.append(installed)
    return found


def find_library(name: str) -> Path:
    """Path of a compiled library of this package, or a DeployError saying how to build it."""
    paths = candidates(name)
    for p in paths:
        if p.is_file():
            return p
    raise DeployError(f"compiled library {name} not found (looked in {', '.join(map(str, paths))}); "
                      f"build it with `pip install .` from the st-deploy source folder")
