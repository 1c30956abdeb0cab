"""Fixtures for the security tests: no credentials from the shell, an app with a password and a token."""

from __future__ import annotations

import pytest

from tests.security.support import AUTH_VARIABLES, PASSWORD, TOKEN


@pytest.fixture(autouse=True)
def _no_credentials_from_the_shell(monkeypatch):
    """A password or token exported in the developer's shell must not leak into these apps."""
    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def secure_app(make_app):
    """An app protected by a password and an API token (CSRF off, as in the default test config)."""
    return make_app(ADMIN_PASSWORD=PASSWORD, API_TOKEN=TOKEN)
