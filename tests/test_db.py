"""The SQLite engine: WAL, a busy timeout, tables on first start, writers that lock up front."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import text

from app.models import JobRun

TABLES = {"schedule_config", "job_run", "scheduler_state", "apscheduler_jobs"}

# Run in a separate process: try to take SQLite's write lock, waiting at most 0.2 s.
BEGIN_IMMEDIATE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0.2, isolation_level=None)
try:
    conn.execute("BEGIN IMMEDIATE")
except sqlite3.OperationalError as exc:
    print(exc)
else:
    conn.execute("ROLLBACK")
    print("acquired")
"""


def begin_immediate_in_another_process(path: Path) -> str:
    """What another process gets when it asks for the write lock: 'acquired' or SQLite's error."""
    done = subprocess.run(
        [sys.executable, "-c", BEGIN_IMMEDIATE, str(path)], capture_output=True, text=True, timeout=20, check=True
    )
    return done.stdout.strip()


def test_connections_use_wal_and_a_busy_timeout(db):
    """Every connection runs in WAL mode and waits at least 5 s for a lock instead of failing."""
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    with db.session() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_database_file_is_in_wal_mode_for_other_processes(app, db):
    """WAL is recorded in the file itself, so any other opener sees it."""
    with db.session() as session:
        session.execute(text("SELECT 1"))
    conn = sqlite3.connect(app.config["STATE_DATABASE_PATH"])
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_all_tables_exist_after_create_app(app):
    """create_app makes every table on a fresh database, with no manual step."""
    path = Path(app.config["STATE_DATABASE_PATH"])
    assert path.parent == Path(app.config["INSTANCE_PATH"])
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    assert names >= TABLES


def test_create_app_twice_on_one_database_keeps_data(make_app):
    """A second start on an existing database neither fails nor drops what is there."""
    first = make_app()
    with first.extensions["db"].writer() as session:
        session.add(JobRun(task="backup", trigger="manual", status="success"))

    second = make_app()

    with second.extensions["db"].session() as session:
        assert session.execute(text("SELECT task, status FROM job_run")).all() == [("backup", "success")]


def hold_session(open_session, ready: threading.Event, release: threading.Event) -> None:
    """Open a session, read once (as read-modify-write code does first), and keep it open."""
    with open_session() as session:
        session.execute(text("SELECT count(*) FROM job_run")).scalar()
        ready.set()
        release.wait(20)


def outcome_while_session_open(session_factory, database_path) -> str:
    """What another process's BEGIN IMMEDIATE gets while a session from ``session_factory`` is open."""
    ready, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_session, args=(session_factory, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        return begin_immediate_in_another_process(database_path)
    finally:
        release.set()
        holder.join(10)


def test_writer_holds_the_write_lock_from_its_first_read(db):
    """While a writer session is open, another process cannot take the write lock, even before any write."""
    assert outcome_while_session_open(db.writer, db.path) == "database is locked"
    assert begin_immediate_in_another_process(db.path) == "acquired"


def test_plain_session_does_not_block_writers_after_a_read(db):
    """A read-only session takes no write lock, so the writer test above really measures writer()."""
    assert outcome_while_session_open(db.session, db.path) == "acquired"
