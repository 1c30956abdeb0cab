"""Helpers shared by the fault-injection tests: runs, backup files, databases, the status partial."""

from __future__ import annotations

import html
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from app.services import runs
from app.services.backups import BACKUP_NAME, TEMP_PREFIX
from app.services.runner import RunOutcome, claim_task, complete_task
from tests.support.waiting import wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TASK = "backup_db"
BLOB_BYTES = 4000  # one row of filler: a little under a 4 KiB page, so rows stay countable


def run_backup(app, trigger: str = "manual") -> RunOutcome:
    """One backup the way every entry point runs it: claim the task, carry it out, record it."""
    db = app.extensions["db"]
    run, lock = claim_task(app.config, db, TASK, trigger)
    return complete_task(app.config, db, run, lock)


def final_backups(folder: Path) -> list[Path]:
    """Files carrying a finished backup's name, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if BACKUP_NAME.match(path.name))


def temp_files(folder: Path) -> list[Path]:
    """Temporary backup files and their SQLite side files (journal, WAL)."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.name.startswith(TEMP_PREFIX))


def integrity_and_rows(path: Path, table: str = "item") -> tuple[str, int]:
    """``PRAGMA integrity_check`` of a file and the row count of one of its tables."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        check = "; ".join(row[0] for row in connection.execute("PRAGMA integrity_check"))
        rows = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        connection.close()
    return check, rows


def add_filler_rows(database: Path, megabytes: float, table: str = "item") -> int:
    """Grow a database by about ``megabytes`` of random blobs; return the table's row count."""
    rows = int(megabytes * 1_000_000 / BLOB_BYTES)
    connection = sqlite3.connect(database, timeout=10, isolation_level=None)
    try:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            f" INSERT INTO {table} (payload) SELECT randomblob({BLOB_BYTES}) FROM n",
            (rows,),
        )
        connection.execute("COMMIT")
        # Move the new pages into the main file, so a copy of it alone holds them all.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        connection.close()


def stored_run(app, run_id: int):
    """The run as the database holds it now (not as the caller last saw it)."""
    return runs.get_run(app.extensions["db"], run_id)


def status_partial_text(client) -> str:
    """The polled status region as htmx gets it, with HTML entities decoded."""
    answer = client.get("/settings/schedule/status", headers={"HX-Request": "true"})
    assert answer.status_code == 200
    return html.unescape(answer.get_data(as_text=True))


class LockHolder:
    """Another process holding a write lock on a database until it commits after ``hold`` seconds.

    ``exclusive=True`` adds ``locking_mode=EXCLUSIVE``: in WAL mode a plain write
    transaction blocks only other writers, exclusive mode blocks readers too (it cannot be
    taken while another connection has the WAL database open). ``acquired`` says whether
    the lock was taken; ``answer`` is the holder's first line ("locked" or the error).
    """

    SCRIPT = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=1)
try:
    if sys.argv[3] == "exclusive":
        connection.execute("PRAGMA locking_mode = EXCLUSIVE")
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("CREATE TABLE IF NOT EXISTS lock_holder (at REAL)")
    connection.execute("INSERT INTO lock_holder VALUES (?)", (time.time(),))
except sqlite3.OperationalError as exc:
    print("failed:", exc, flush=True)
    sys.exit(3)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
connection.close()
"""

    def __init__(self, database: Path, hold: float, exclusive: bool = True) -> None:
        mode = "exclusive" if exclusive else "normal"
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, str(database), str(hold), mode], stdout=subprocess.PIPE, text=True
        )
        self.answer = self.process.stdout.readline().strip()
        self.acquired = self.answer == "locked"

    def stop(self) -> None:
        """Kill the holder (the kernel drops its locks, the transaction rolls back) if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.process.stdout.close()


def process_state(pid: int) -> str | None:
    """The one-letter state of a process (``T`` = stopped), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def file_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def wait_until_frozen(driver, log: Path) -> None:
    """Wait until a driver process stopped itself (SIGSTOP) at its stop point; fail if it exited."""

    def frozen():
        if driver.poll() is not None:
            raise AssertionError(f"the driver exited ({driver.returncode}) before its stop point:\n{log.read_text()}")
        return process_state(driver.pid) == "T"

    wait_for(frozen, 120, interval=0.02)
