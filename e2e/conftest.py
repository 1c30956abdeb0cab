"""End-to-end fixtures: the real app under gunicorn (2 workers) and the system Chromium."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support.server import GunicornServer

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def chromium_path() -> str:
    """CHROMIUM_PATH, else the first Chromium on PATH (`make test` sets CHROMIUM_PATH)."""
    path = os.environ.get("CHROMIUM_PATH") or next(
        (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
        None,
    )
    if not path:
        pytest.fail("No Chromium found: run `make test` (it installs one) or set CHROMIUM_PATH.")
    return path


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": chromium_path(), "args": CHROMIUM_FLAGS}


@pytest.fixture
def live_server(tmp_path):
    """A fresh app (own instance folder and database) under gunicorn with 2 workers."""
    server = GunicornServer(tmp_path / "instance", workers=2).start()
    yield server
    server.stop()


@pytest.fixture
def settings_page(page, live_server):
    """The Settings page, loaded, with every browser console error collected."""
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(live_server.url + "/settings")
    page.console_errors = errors
    return page
