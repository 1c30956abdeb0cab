"""Fixtures every test folder shares (registered by the project's root conftest.py)."""

from __future__ import annotations

import pytest

from tests.support.postgres import PostgresCluster, start_cluster
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
