"""Shared test fixtures for tests/ and e2e/ (kept in tests/support/), and the test order."""

import pytest

pytest_plugins = ["tests.support.fixtures"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Run the slow (real-clock) tests first: under xdist they then overlap the rest instead of trailing it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
