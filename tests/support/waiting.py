"""Polling helper for tests that wait on other threads or processes."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float, interval: float = 0.05, message: str | None = None):
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout} s")
        time.sleep(interval)
