"""Shared test fixtures for tests/ and e2e/ (kept in tests/support/), the test order, artifacts."""

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.fixtures"]


def pytest_configure(config):
    """Wipe the Playwright artifacts folder once, in the controlling process (not once per xdist worker)."""
    if hasattr(config, "workerinput"):
        return
    shutil.rmtree(Path(config.getoption("--output", "test-results")), ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def delete_output_dir():
    """Replaces pytest-playwright's wipe, which runs when a worker first uses it: mid-run under xdist,
    deleting the screenshots and axe reports other workers had written."""


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Run the slow (real-clock) tests first: under xdist they then overlap the rest instead of trailing it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
