"""The real app under gunicorn (tests/support/server.py), in folders under bench/data/runs/."""

from __future__ import annotations

import shutil
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.data import DATA_DIR
from bench.system import children, total_cpu_seconds
from tests.support.server import GunicornServer

RUNS_DIR = DATA_DIR / "runs"
# Benchmarks measure the app as served without login (the default when no password is set).
NO_AUTH = {"ADMIN_PASSWORD": "", "ADMIN_PASSWORD_HASH": "", "API_TOKEN": ""}


def run_dir(name: str) -> Path:
    """A fresh, empty folder for one measurement's instance, backups and logs."""
    path = RUNS_DIR / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def start_server(name: str, workers: int = 2, database: Path | None = None, **env: str) -> GunicornServer:
    """Start gunicorn with its own instance folder (and database, unless one is given)."""
    instance = run_dir(name)
    settings = {
        **NO_AUTH,
        "SCHEDULER_ENABLED": "true",
        "BACKUPS_DIR": str(instance / "backups"),
        "DATABASE_URL": f"sqlite:///{database or instance / 'app.db'}",
        **env,
    }
    return GunicornServer(instance, workers=workers, **settings).start(timeout=60)


def state_database_of(server: GunicornServer) -> Path:
    """The server's state database (schedules, runs, heartbeat): the default under its instance."""
    return server.instance / "state.db"


def server_pids(server: GunicornServer) -> list[int]:
    """The gunicorn master and its workers."""
    return [server.process.pid, *children(server.process.pid)]


def server_cpu_seconds(server: GunicornServer) -> float:
    """CPU time used so far by the master and its workers."""
    return total_cpu_seconds(server_pids(server))


def query(database: Path, sql: str, *args) -> list[tuple]:
    """Read from a server's database through a short-lived connection."""
    connection = sqlite3.connect(database, timeout=10)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


def parse_utc(text: str | None) -> datetime | None:
    """A datetime column as the app stores it (naive UTC text), made aware."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def wait_for_leader(server: GunicornServer, timeout: float = 30) -> int:
    """The pid of the worker that leads the scheduler, once its heartbeat is fresh."""
    database = state_database_of(server)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rows = query(database, "SELECT leader_pid, heartbeat_at FROM scheduler_state")
        except sqlite3.OperationalError:
            rows = []
        if rows and rows[0][0] in children(server.process.pid):
            age = (datetime.now(UTC) - parse_utc(rows[0][1])).total_seconds()
            if age < 10:
                return rows[0][0]
        time.sleep(0.25)
    raise RuntimeError(f"no scheduler leader within {timeout} s:\n{server.log()[-2000:]}")
