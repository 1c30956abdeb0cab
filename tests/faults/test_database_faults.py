"""Faults of the database being backed up: locked by another process, not a database, damaged, deleted.

The app's own tables (``job_run`` ...) live in the database it backs up. In WAL mode a
writer in another process never blocks the copy (it only reads) but does block the
run's own history writes; an exclusive lock blocks both, and the app records nothing.
The tests pin what happens then. To reach the backup's own busy timeout with the
history still writable, a few tests point the task at a separate source database
through the config mapping ``complete_task`` receives (``DATABASE_PATH``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from app import db as app_db
from app.services import runs
from app.services.backups import BackupSourceError, perform_sqlite_backup
from app.services.runner import claim_task, complete_task
from tests.faults.helpers import (
    TASK,
    LockHolder,
    add_filler_rows,
    final_backups,
    integrity_and_rows,
    status_partial_text,
    stored_run,
    temp_files,
)

APP_BUSY_TIMEOUT_SECONDS = 10  # app/db.py BUSY_TIMEOUT_MS: how long the app waits for its own tables
STAYED_LOCKED = "The database stayed locked by another writer for more than 1 s; the backup was not taken."


@pytest.fixture
def holders():
    """Start lock holders in other processes; every one still running is killed at teardown."""
    started = []

    def start(database: Path, hold: float, exclusive: bool = True) -> LockHolder:
        holder = LockHolder(database, hold, exclusive)
        started.append(holder)
        return holder

    yield start
    for holder in started:
        holder.stop()


def make_source(path: Path, megabytes: float = 0.5) -> int:
    """A separate WAL database to back up, like the app's; returns its row count."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.close()
    return add_filler_rows(path, megabytes)


def run_with_source(app, source: Path, busy_timeout: float):
    """One run of the backup task whose source is ``source``; history in the app's database."""
    config = {**app.config, "DATABASE_PATH": str(source), "BACKUP_BUSY_TIMEOUT_SECONDS": busy_timeout}
    db = app.extensions["db"]
    run, lock = claim_task(config, db, TASK, "manual")
    return complete_task(config, db, run, lock)


# --- the app's own database, locked ----------------------------------------------------------


def test_exclusive_lock_cannot_be_taken_while_the_app_has_its_database_open(make_app, holders):
    """An open WAL connection keeps a shared lock on the file: the would-be locker fails, backups go on."""
    app = make_app(BACKUP_BUSY_TIMEOUT_SECONDS="1")
    client = app.test_client()
    assert client.post("/api/v1/settings/backup-db").status_code == 200
    assert app.extensions["db"].engine.pool.checkedin() >= 1  # the app keeps a connection open

    holder = holders(Path(app.config["STATE_DATABASE_PATH"]), hold=30)

    assert not holder.acquired
    assert holder.answer == "failed: database is locked"
    started = time.monotonic()
    answer = client.post("/api/v1/settings/backup-db")
    assert answer.status_code == 200, answer.get_json()
    assert time.monotonic() - started < 1


def test_exclusive_lock_taken_before_the_app_connects_fails_requests_after_the_app_busy_timeout(
    make_app, holders, monkeypatch
):
    """What the user sees: a readable 503 "database is busy" for the backup and the status poll; no history row.

    Recording the run in ``job_run`` comes first and waits the app's own busy timeout
    (10 s in production; 2 s here, against a 1 s backup timeout, to tell them apart), so
    neither the backup's busy timeout nor its "stayed locked" message is ever reached.
    """
    monkeypatch.setattr(app_db, "BUSY_TIMEOUT_MS", 2000)
    app = make_app(TESTING=False, BACKUP_BUSY_TIMEOUT_SECONDS="1")
    db = app.extensions["db"]
    backups_dir = Path(app.config["BACKUPS_DIR"])
    db.dispose()  # as when no connection is open yet: only then can another process take the lock
    holder = holders(Path(app.config["STATE_DATABASE_PATH"]), hold=60)
    assert holder.acquired

    def timed(method: str, path: str, **kwargs):
        started = time.monotonic()
        answer = getattr(app.test_client(), method)(path, **kwargs)
        return answer, time.monotonic() - started

    backup_answer, backup_seconds = timed("post", "/api/v1/settings/backup-db")
    status_answer, status_seconds = timed("get", "/settings/schedule/status", headers={"HX-Request": "true"})

    assert backup_answer.status_code == 503
    # The app's own "database is busy" answer, not the backup's "stayed locked" message.
    assert backup_answer.get_json()["error"].startswith("The database is busy (locked by another process)")
    assert 1.9 < backup_seconds < 4
    assert status_answer.status_code == 503
    assert status_answer.headers["X-Error-Message"].startswith("The database is busy")
    assert 1.9 < status_seconds < 4
    holder.stop()
    assert final_backups(backups_dir) == [] and temp_files(backups_dir) == []
    assert runs.recent_runs(db, TASK) == []  # the failed attempt left no trace in the history
    answer = app.test_client().post("/api/v1/settings/backup-db")  # the single-flight lock was released
    assert answer.status_code == 200, answer.get_json()


def test_exclusive_lock_released_within_the_app_busy_timeout_backup_waits_and_succeeds(make_app, holders):
    """The wait is the app's own 10 s (recording the run), not the backup's 1 s."""
    app = make_app(BACKUP_BUSY_TIMEOUT_SECONDS="1")
    app.extensions["db"].dispose()
    holder = holders(Path(app.config["STATE_DATABASE_PATH"]), hold=2)
    assert holder.acquired
    started = time.monotonic()

    answer = app.test_client().post("/api/v1/settings/backup-db")

    waited = time.monotonic() - started
    assert answer.status_code == 200, answer.get_json()
    assert 1.5 < waited < APP_BUSY_TIMEOUT_SECONDS
    run = stored_run(app, answer.get_json()["run_id"])
    assert (run.status, run.file) == ("success", answer.get_json()["file"])


@pytest.fixture
def short_app_busy_timeout(monkeypatch):
    """The app's own busy timeout cut from 10 s to 1 s: the same waits, in seconds instead of tens."""
    monkeypatch.setattr(app_db, "BUSY_TIMEOUT_MS", 1000)


def test_write_transaction_held_past_the_app_busy_timeout_does_not_fail_the_backup(
    make_app, holders, short_app_busy_timeout
):
    """In WAL mode the copy only reads, so a writer in another process must not fail it.

    Only the run's progress writes wait for that writer; one that times out is skipped.
    """
    app = make_app()
    db = app.extensions["db"]
    run, lock = claim_task(app.config, db, TASK, "manual")
    holder = holders(Path(app.config["STATE_DATABASE_PATH"]), hold=1.8, exclusive=False)
    assert holder.acquired

    outcome = complete_task(app.config, db, run, lock)

    assert outcome.error is None, outcome.error
    stored = stored_run(app, run.id)
    assert (stored.status, stored.error) == ("success", None)
    assert integrity_and_rows(Path(app.config["BACKUPS_DIR"]) / stored.file, "sqlite_master")[0] == "ok"


@pytest.mark.slow
def test_outcome_is_recorded_when_another_writer_still_holds_the_database_as_the_run_ends(
    make_app, holders, short_app_busy_timeout
):
    """The run is not left "running" under a live pid (shown as running, never closed by the leader)."""
    app = make_app()
    db = app.extensions["db"]
    run, lock = claim_task(app.config, db, TASK, "manual")
    # Three progress writes (1 s each, skipped) and the first try to record the outcome
    # all meet the writer; the outcome is recorded once it commits.
    holder = holders(Path(app.config["STATE_DATABASE_PATH"]), hold=6, exclusive=False)
    assert holder.acquired
    started = time.monotonic()

    outcome = complete_task(app.config, db, run, lock)

    assert time.monotonic() - started > 5
    assert outcome.error is None, outcome.error
    stored = stored_run(app, run.id)
    assert (stored.status, stored.file) == ("success", outcome.result["file"])
    assert runs.latest_run(db, TASK, status="running") is None


# --- a separate source database, locked -------------------------------------------------------


def test_source_locked_longer_than_the_backup_busy_timeout_fails_the_run_with_stayed_locked(
    make_app, holders, tmp_path
):
    app = make_app()
    source = tmp_path / "source.db"
    rows = make_source(source)
    backups_dir = Path(app.config["BACKUPS_DIR"])
    holder = holders(source, hold=60)
    assert holder.acquired
    started = time.monotonic()

    outcome = run_with_source(app, source, busy_timeout=1.0)

    waited = time.monotonic() - started
    assert 0.9 < waited < 5
    assert isinstance(outcome.error, BackupSourceError)
    assert str(outcome.error) == STAYED_LOCKED
    assert (stored_run(app, outcome.run.id).status, stored_run(app, outcome.run.id).error) == ("failed", STAYED_LOCKED)
    assert STAYED_LOCKED in status_partial_text(app.test_client())
    assert final_backups(backups_dir) == [] and temp_files(backups_dir) == []

    holder.stop()
    retry = run_with_source(app, source, busy_timeout=1.0)
    assert retry.error is None, retry.error
    assert integrity_and_rows(backups_dir / retry.run.file) == ("ok", rows)


def test_source_lock_released_before_the_backup_busy_timeout_waits_and_succeeds(make_app, holders, tmp_path):
    app = make_app()
    source = tmp_path / "source.db"
    rows = make_source(source)
    holder = holders(source, hold=1)
    assert holder.acquired
    started = time.monotonic()

    outcome = run_with_source(app, source, busy_timeout=5.0)

    waited = time.monotonic() - started
    assert outcome.error is None, outcome.error
    assert 0.8 < waited < 5
    backup = Path(app.config["BACKUPS_DIR"]) / outcome.run.file
    # The holder's write committed before the copy began: the backup has it.
    assert integrity_and_rows(backup) == ("ok", rows)
    assert integrity_and_rows(backup, "lock_holder")[1] == 1


# --- a source that is not (or no longer) a database ---------------------------------------------


def test_garbage_bytes_are_reported_as_not_a_database_and_nothing_is_written(make_app, tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00definitely not SQLite" + os.urandom(64 * 1024))
    direct_dir = tmp_path / "direct"

    with pytest.raises(BackupSourceError, match="is not a SQLite database"):
        perform_sqlite_backup(junk, direct_dir)
    assert list(direct_dir.iterdir()) == []

    app = make_app()
    outcome = run_with_source(app, junk, busy_timeout=1.0)
    expected = f"The file {junk} is not a SQLite database."
    assert str(outcome.error) == expected
    assert stored_run(app, outcome.run.id).error == expected
    assert expected in status_partial_text(app.test_client())
    assert list(Path(app.config["BACKUPS_DIR"]).iterdir()) == []


def test_damaged_source_fails_the_integrity_check_with_a_short_message_and_publishes_nothing(make_app, tmp_path):
    source = tmp_path / "damaged.db"
    connection = sqlite3.connect(source)
    connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, label TEXT)")
    connection.execute("CREATE INDEX item_label ON item (label)")
    connection.executemany("INSERT INTO item (label) VALUES (?)", ((f"{i * 7919:048x}",) for i in range(20_000)))
    connection.commit()
    connection.close()
    pages = source.stat().st_size // 4096
    with open(source, "r+b") as handle:  # scribble over cell pointers in a page in the middle
        handle.seek(4096 * (pages // 2) + 10)
        handle.write(b"\xff" * 200)
    app = make_app()

    outcome = run_with_source(app, source, busy_timeout=1.0)

    message = str(outcome.error)
    assert message.startswith("The backup failed its integrity check: ")
    assert "\n" not in message and len(message) < 400  # fit for the status line, not 70 lines of detail
    assert stored_run(app, outcome.run.id).error == message
    backups_dir = Path(app.config["BACKUPS_DIR"])
    assert final_backups(backups_dir) == [] and temp_files(backups_dir) == []


def test_database_file_deleted_under_the_running_app_fails_the_run_as_missing(make_app, tmp_path):
    """The run fails as "does not exist"; its history goes to the open, now unlinked, file."""
    database = tmp_path / "data" / "app.db"
    app = make_app(DATABASE_URL=f"sqlite:///{database}")
    database.unlink()

    outcome = run_with_source(app, database, busy_timeout=1.0)

    expected = f"The database file {database} does not exist."
    assert str(outcome.error) == expected
    assert isinstance(outcome.error, BackupSourceError)
    # The pooled connection still has the deleted file open, so the history row is written
    # and readable in this process, but into a file no other process (or restart) will see.
    assert (stored_run(app, outcome.run.id).status, stored_run(app, outcome.run.id).error) == ("failed", expected)
    assert not database.exists()
    backups_dir = Path(app.config["BACKUPS_DIR"])
    assert final_backups(backups_dir) == [] and temp_files(backups_dir) == []
