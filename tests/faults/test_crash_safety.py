"""A backup killed at any moment: no unverified file under a final name, an honest history, recovery.

A driver process (``backup_driver.py``) runs one backup on a database of about 200 MB,
so the phases last long enough to be hit from outside, and is SIGKILLed at each point of
its life. Then: every file named like a backup is complete and verified, the killed run
is left "running" with a dead pid but is not shown as running, and the next run marks
it interrupted, removes its leftovers and succeeds. The same holds for a gunicorn worker
killed in the middle of a backup started through the API.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from app import create_app
from app.services import runs
from app.services.runner import claim_task, complete_task
from app.services.status import task_status
from tests.faults.helpers import (
    PROJECT_ROOT,
    TASK,
    add_filler_rows,
    final_backups,
    integrity_and_rows,
    stored_run,
    temp_files,
    wait_for,
    wait_until_frozen,
)
from tests.support.server import GunicornServer
from tests.support.sqlite import query as query_database

# Big databases and disk-heavy kills: never two of these at once (xdist), or the timing blurs.
pytestmark = pytest.mark.xdist_group("big-database")

SOURCE_MEGABYTES = 200  # copy ~0.3 s, verify ~0.6 s here: long enough to catch each phase
FROZEN_POINTS = ("starting", "finalizing", "published")  # too short to hit by polling: the driver stops itself
INTERRUPTED_ERROR = "The process running this backup stopped before it finished."


@dataclass(frozen=True)
class SourceDatabase:
    path: Path
    rows: int


@pytest.fixture(scope="module")
def big_database(tmp_path_factory) -> SourceDatabase:
    """An app database with ~200 MB of blobs in table ``item``, built once per module."""
    folder = tmp_path_factory.mktemp("big-database")
    app = create_app({"INSTANCE_PATH": str(folder), "SECRET_KEY": "x", "TESTING": True})
    app.extensions["db"].dispose()
    rows = add_filler_rows(folder / "app.db", SOURCE_MEGABYTES)
    yield SourceDatabase(folder / "app.db", rows)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def instance(tmp_path, big_database) -> Path:
    """An instance folder holding a fresh copy of the big database."""
    folder = tmp_path / "instance"
    folder.mkdir()
    shutil.copyfile(big_database.path, folder / "app.db")
    yield folder
    # Hundreds of MB per test: do not leave them in pytest's retained temporary folders.
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def app(instance, make_app):
    """The app in this (the test's) process, on the same instance folder as the driver."""
    return make_app(INSTANCE_PATH=str(instance))


@pytest.fixture
def watch(instance):
    """A plain SQLite connection to read ``job_run`` while another process writes it."""
    connection = sqlite3.connect(instance / "state.db", timeout=10, isolation_level=None)
    yield connection
    connection.close()


def latest_run_row(watch) -> tuple | None:
    """(id, status, phase, pid) of the newest run."""
    return watch.execute("SELECT id, status, phase, pid FROM job_run ORDER BY id DESC LIMIT 1").fetchone()


def start_driver(instance: Path, log: Path, stop_at: str | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "tests.faults.backup_driver", str(instance)]
    if stop_at:
        command += ["--stop-at", stop_at]
    with open(log, "w") as output:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT)


def kill_mid_copy(driver: subprocess.Popen, watch, backups_dir: Path, source_size: int) -> float:
    """SIGKILL the driver while its copy is partly written; return the share written by then.

    The run's ``progress`` column is rewritten at most every 0.5 s and this copy lasts
    ~0.3 s, so the temporary file's size is the measure of how far the copy got.
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the backup ended before the test could kill it"
        row = latest_run_row(watch)
        if row is None or row[2] in (None, "starting"):
            continue
        assert row[2] == "copying", f"the copy ended before the test saw it half done (phase {row[2]})"
        for temp in temp_files(backups_dir):
            try:
                written = temp.stat().st_size / source_size
            except FileNotFoundError:
                continue
            if 0.01 < written < 0.99:
                driver.send_signal(signal.SIGKILL)
                return written
    raise AssertionError("the copy did not start within 60 s")


def kill_in_phase(driver: subprocess.Popen, watch, phase: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the backup ended before the test could kill it"
        row = latest_run_row(watch)
        if row is not None and row[2] == phase:
            driver.send_signal(signal.SIGKILL)
            return
        assert row is None or row[1] == "running", f"the run ended before reaching {phase}"
    raise AssertionError(f"the run did not reach {phase} within 60 s")


def assert_every_final_backup_is_complete(folder: Path, rows: int) -> list[Path]:
    finals = final_backups(folder)
    for path in finals:
        assert integrity_and_rows(path) == ("ok", rows), path.name
    return finals


@pytest.mark.slow
@pytest.mark.parametrize("point", ["starting", "copying", "verifying", "finalizing", "published"])
def test_backup_killed_at_any_point_leaves_only_verified_backups_and_the_next_run_recovers(
    point, instance, app, watch, big_database, tmp_path
):
    db = app.extensions["db"]
    backups_dir = instance / "backups"
    log = tmp_path / "driver.log"
    driver = start_driver(instance, log, stop_at=point if point in FROZEN_POINTS else None)
    try:
        if point in FROZEN_POINTS:
            wait_until_frozen(driver, log)
            expected_phase = "finalizing" if point == "published" else point
            assert latest_run_row(watch)[2] == expected_phase
            driver.send_signal(signal.SIGKILL)
        elif point == "copying":
            written = kill_mid_copy(driver, watch, backups_dir, big_database.path.stat().st_size)
            assert 0.01 < written < 0.99
        else:
            kill_in_phase(driver, watch, point)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait(10)  # reaped: a zombie would still answer kill(pid, 0)
    assert driver.returncode == -signal.SIGKILL

    # No partial or unverified file under a final name: before the rename there is none at
    # all; after it, exactly the one verified file.
    finals = assert_every_final_backup_is_complete(backups_dir, big_database.rows)
    assert len(finals) == (1 if point == "published" else 0)
    leftovers = temp_files(backups_dir)
    if point != "starting":
        assert leftovers, "the killed run should have left its temporary file (else this test proves nothing)"
        # What a crash inside a journaled write would add beside it; the cleanup must take it too.
        Path(f"{leftovers[0]}-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7")

    # The history keeps the truth (the run never finished) but nobody is shown as running it.
    killed_id, status, _phase, pid = latest_run_row(watch)
    assert (status, pid) == ("running", driver.pid)
    assert not runs.is_alive(stored_run(app, killed_id))
    assert task_status(app.config, db, TASK).running is None

    # The next claim closes the killed run; the next backup removes its leftovers and succeeds.
    run, lock = claim_task(app.config, db, TASK, "manual")
    killed = stored_run(app, killed_id)
    assert (killed.status, killed.error) == ("interrupted", INTERRUPTED_ERROR)
    assert killed.finished_at is not None
    outcome = complete_task(app.config, db, run, lock)
    assert outcome.error is None, outcome.error
    assert stored_run(app, run.id).status == "success"
    assert temp_files(backups_dir) == []
    after = assert_every_final_backup_is_complete(backups_dir, big_database.rows)
    assert [path.name for path in after] == sorted([*(path.name for path in finals), outcome.run.file])


def query(instance: Path, sql: str, *args) -> list[tuple]:
    return query_database(instance / "state.db", sql, *args)


@pytest.mark.slow
def test_worker_killed_mid_backup_is_marked_interrupted_by_the_leader_and_the_next_run_succeeds(instance, big_database):
    server = GunicornServer(instance, workers=2).start()
    try:
        status, body = server.request("POST", "/api/v1/settings/scheduler/backup/run")
        assert status == 202, body
        run_id = body["run"]["id"]
        (pid, run_status), *_ = query(instance, "SELECT pid, status FROM job_run WHERE id = ?", run_id)
        assert run_status == "running"
        assert pid in server.worker_pids()
        signal_sent_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)

        # The leader (the other worker, or a new leader if the killed one led) sees the dead
        # pid and closes the run without waiting for the next backup.
        wait_for(lambda: query(instance, "SELECT status FROM job_run WHERE id = ?", run_id)[0][0] != "running", 15)
        assert time.monotonic() - signal_sent_at < 10
        assert query(instance, "SELECT id, status, error FROM job_run") == [(run_id, "interrupted", INTERRUPTED_ERROR)]
        assert assert_every_final_backup_is_complete(instance / "backups", big_database.rows) == []

        status, body = server.request("POST", "/api/v1/settings/scheduler/backup/run")
        assert status == 202, body
        next_id = body["run"]["id"]
        wait_for(lambda: query(instance, "SELECT status FROM job_run WHERE id = ?", next_id)[0][0] != "running", 60)
        assert query(instance, "SELECT status, error FROM job_run WHERE id = ?", next_id) == [("success", None)]
        assert temp_files(instance / "backups") == []
        assert len(assert_every_final_backup_is_complete(instance / "backups", big_database.rows)) == 1
    finally:
        server.stop()
