"""tests/compact: `samples_dir` is the suite's `samples` fixture (tests/conftest.py), which finds the
SuperTickets samples under $ST_DEPLOY_SHARED, then ../shared, and skips with the reason where neither
holds them: one finder for the whole suite."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def samples_dir(samples: Path) -> Path:
    return samples
