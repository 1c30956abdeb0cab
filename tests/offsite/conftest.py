"""Fixtures for off-site copies: a real ``rclone serve s3`` whose storage can fail like a disk."""

from __future__ import annotations

import pytest

from tests.offsite.support import FaultyS3, OffsiteApp


@pytest.fixture
def s3(tmp_path):
    """A real S3 server (rclone) with a bucket ``backups``; its storage can be made full."""
    server = FaultyS3(tmp_path / "s3").start()
    try:
        server.make_bucket("backups")
        yield server
    finally:
        server.kill()


@pytest.fixture
def offsite_app(make_app, s3):
    """The app (scheduler configured, not started) and helpers to add targets pointing at ``s3``."""
    app = make_app(OFFSITE_TIMEOUT_SECONDS=3, OFFSITE_SCRYPT_WORK_FACTOR=10)
    return OffsiteApp(app, s3)
