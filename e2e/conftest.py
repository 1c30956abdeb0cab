"""End-to-end fixtures: the real app under gunicorn (2 workers) and the system Chromium.

Under pytest-xdist every worker has its own browser (pytest-playwright's session
fixtures are per worker) and every test its own server on a free port.
"""

from __future__ import annotations

import os
import shutil

import pytest

from e2e.support import open_settings

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
def live_server(gunicorn):
    """A fresh app (own instance folder and database) under gunicorn with 2 workers."""
    return gunicorn()


@pytest.fixture
def settings_page(live_server, page):
    """The Settings page, loaded, with every browser console error collected.

    The server comes before ``page`` so that, fixtures being torn down in reverse, the
    browser closes its keep-alive connections before gunicorn stops (otherwise each stop
    takes about 2 s longer). Tests that take both should ask for the server first too.
    """
    return open_settings(page, live_server)


@pytest.fixture
def start_server(gunicorn):
    """Start another app server: ``start_server(name, prepare=None, **env)``; every one is stopped at teardown."""
    return gunicorn


@pytest.fixture
def offsite_server(gunicorn):
    """The app for off-site steps: short off-site timeout, a cheap scrypt for passphrase copies."""
    return gunicorn(OFFSITE_TIMEOUT_SECONDS="5", OFFSITE_SCRYPT_WORK_FACTOR="10")
