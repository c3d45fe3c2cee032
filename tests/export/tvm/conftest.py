"""Fixtures for the TVM export tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def every_op():
    from tests.graphs import every_op_graph
    return every_op_graph()
