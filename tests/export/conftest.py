import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def ort_lib() -> Path:
    """The st.sparse library; required in CI (a missing one fails there), skipped elsewhere."""
    from st_deploy.ort import ENV_LIB, ort_library_path
    lib = ort_library_path()
    if not lib.is_file():
        msg = f"{lib} not built (pip install --no-build-isolation . or set {ENV_LIB})"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return lib
