"""The integration tests start ``arcade-pacs serve`` as its own process between real peers
(:mod:`arcade_pacs.bench.peers`; the fixtures are in ``tests/conftest.py``)."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _shipped_engine_ready(shipped_litert):
    """Every plugin started here serves the checked LiteRT form (built once, before the first)."""
    return shipped_litert
