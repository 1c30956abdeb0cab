"""A database locked by another process past the busy timeout: a readable 503, not a 500."""

from __future__ import annotations

import subprocess
import sys

import pytest

import app.db as db_module

BUSY = "The database is busy (locked by another process). Try again in a moment."


@pytest.fixture
def lock_database(app, monkeypatch):
    """Start a process that holds SQLite's exclusive lock on the app database; returns it."""
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 300)
    holders = []

    def start():
        app.extensions["db"].dispose()  # pooled connections must reconnect after the lock is taken
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None);"
                " c.execute('PRAGMA locking_mode=EXCLUSIVE'); c.execute('BEGIN EXCLUSIVE');"
                " print('locked', flush=True); time.sleep(60)",
                app.config["STATE_DATABASE_PATH"],
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        holders.append(holder)
        assert holder.stdout.readline().strip() == "locked"
        return holder

    yield start
    for holder in holders:
        holder.kill()
        holder.wait()


def test_api_answers_503_json_while_the_database_is_locked(client, lock_database):
    lock_database()
    answer = client.post("/api/v1/settings/backup-db")
    assert answer.status_code == 503
    assert answer.get_json() == {"error": BUSY}


def test_htmx_poll_answers_503_with_a_message_then_recovers_when_the_lock_is_gone(client, htmx, lock_database):
    holder = lock_database()
    answer = client.get("/settings/schedule/status", headers=htmx)
    assert answer.status_code == 503
    assert answer.headers["X-Error-Message"] == BUSY
    assert "unsafe-inline" not in answer.headers["Content-Security-Policy"]

    holder.kill()
    holder.wait()
    assert client.get("/settings/schedule/status", headers=htmx).status_code == 200
