"""Fixtures every test folder shares (registered by the project's root conftest.py)."""

from __future__ import annotations

import pytest

from tests.offsite.support import FaultyS3
from tests.support.postgres import PostgresCluster, start_cluster
from tests.support.s3_servers import SERVERS, RcloneS3, S3Server, SeaweedS3
from tests.support.server import GunicornServer


@pytest.fixture
def gunicorn(tmp_path):
    """Start app servers: ``gunicorn(name="instance", workers=2, prepare=None, **env)``; all stop at teardown.

    ``prepare(instance_folder)`` runs before the server starts (e.g. to seed its database).
    """
    servers: list[GunicornServer] = []

    def start(name: str = "instance", workers: int = 2, prepare=None, **env: str) -> GunicornServer:
        server = GunicornServer(tmp_path / name, workers=workers, **env)
        if prepare is not None:
            prepare(server.instance)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def _serving(server: S3Server):
    """Start ``server`` for one test and kill it afterwards, even when the start itself failed."""
    try:
        yield server.start()
    finally:
        server.kill()  # its data is thrown away with tmp_path: no need to wait for a clean stop


@pytest.fixture
def rclone_s3(tmp_path):
    """``rclone serve s3`` on a free port, data under ``tmp_path``; create buckets with ``make_bucket``."""
    yield from _serving(RcloneS3(tmp_path / "rclone-s3"))


@pytest.fixture
def seaweed_s3(tmp_path):
    """SeaweedFS's ``weed mini`` on free ports, data under ``tmp_path``; create buckets with ``make_bucket``."""
    yield from _serving(SeaweedS3(tmp_path / "seaweed-s3"))


@pytest.fixture(params=sorted(SERVERS))
def s3_server(request, tmp_path):
    """Each real S3 server in turn (the test runs once per implementation, to catch provider quirks)."""
    yield from _serving(SERVERS[request.param](tmp_path / f"{request.param}-s3"))


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster, one per xdist worker, stopped and deleted at the end."""
    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> str:
    """The URL of a new, empty database in the session's cluster (one per test)."""
    return postgres.url(postgres.new_database())


@pytest.fixture
def s3(tmp_path):
    """A real S3 server (rclone) with a bucket ``backups``; its storage can be made full."""
    server = FaultyS3(tmp_path / "s3").start()
    try:
        server.make_bucket("backups")
        yield server
    finally:
        server.kill()
