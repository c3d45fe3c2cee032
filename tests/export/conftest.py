import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def ort_lib() -> Path:
    """The st.sparse library: a missing one fails in CI and wherever the kernels were built
    (tests/ort_lib.py), and skips only in a checkout with no native build at all."""
    from tests.ort_lib import require_ort_library
    return require_ort_library()
