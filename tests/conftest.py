"""Fixtures: an app on a real SQLite file in a temporary folder, its client and CLI runner."""

from __future__ import annotations

import pytest

from app import create_app


@pytest.fixture
def make_app(tmp_path):
    """Build apps on ``tmp_path``; keyword arguments override settings by name."""
    created = []

    def factory(**overrides):
        config = {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "SECRET_KEY": "test-secret",
            "SCHEDULER_TIMEZONE": "Europe/Berlin",
            "WTF_CSRF_ENABLED": False,
        }
        config.update(overrides)
        app = create_app(config)
        created.append(app)
        return app

    yield factory
    for app in created:
        app.extensions["scheduler"].stop()
        app.extensions["db"].dispose()


@pytest.fixture
def app(make_app):
    """The app with the scheduler enabled (configured, not started)."""
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def db(app):
    return app.extensions["db"]


@pytest.fixture
def htmx():
    """Headers htmx sends with its requests."""
    return {"HX-Request": "true"}
