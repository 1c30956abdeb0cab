"""Fixtures for off-site copies: the app beside a real S3 server (``s3``, in tests/support/fixtures.py)."""

from __future__ import annotations

import pytest

from tests.offsite.support import OffsiteApp


@pytest.fixture
def offsite_app(make_app, s3):
    """The app (scheduler configured, not started) and helpers to add targets pointing at ``s3``."""
    app = make_app(OFFSITE_TIMEOUT_SECONDS=3, OFFSITE_SCRYPT_WORK_FACTOR=10)
    return OffsiteApp(app, s3)
