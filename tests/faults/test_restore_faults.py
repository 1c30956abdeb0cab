"""A restore killed at any moment leaves the live data old or new, never a mix; a full disk stops it early.

A driver process (``restore_driver.py``) restores a ~200 MB backup over a live database
that differs from it by a few rows, and is SIGKILLed at each point of its life: during
the checks, the safety backup, the copy (its write transaction half written) and the
final check. Afterwards the live data is one of the two contents, passes
``integrity_check``, and the next start of the app marks the run interrupted.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app import create_app
from app.services import runs
from app.services.backups import perform_sqlite_backup
from app.services.runner import claim_task, complete_task
from app.services.runs import INTERRUPTED_RESTORE
from tests.faults.helpers import PROJECT_ROOT, add_filler_rows, wait_until_frozen
from tests.support.data import fill_items, integrity

pytestmark = pytest.mark.xdist_group("big-database")  # one ~200 MB database at a time on the disk

SOURCE_MEGABYTES = 200  # a copy of several 64 MiB steps: one can be stopped half done
BACKUP_NAME = "backup-20261101T030000.000000Z-manual.sqlite3"


@dataclass(frozen=True)
class Sources:
    live: Path
    backup: Path


def fingerprint(path: Path) -> tuple:
    """Cheap but telling: row count, highest id and the labels present."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute(
            "SELECT count(*), max(id), (SELECT group_concat(DISTINCT label) FROM item) FROM item"
        ).fetchone()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Sources:
    """A ~200 MB data database, a verified backup of it, and a live version with 5 more rows."""
    folder = tmp_path_factory.mktemp("restore-sources")
    live = folder / "app.db"
    conn = sqlite3.connect(live)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, label TEXT, payload BLOB)")
    conn.close()
    add_filler_rows(live, SOURCE_MEGABYTES)
    with sqlite3.connect(live) as conn:
        conn.execute("UPDATE item SET label = 'backed up'")
    conn.close()
    made = perform_sqlite_backup(live, folder / "backups", kind="manual")
    fill_items(live, 5, label="newer")
    yield Sources(live, made.path)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def instance(tmp_path, sources) -> Path:
    folder = tmp_path / "instance"
    (folder / "backups").mkdir(parents=True)
    shutil.copyfile(sources.live, folder / "app.db")
    shutil.copyfile(sources.backup, folder / "backups" / BACKUP_NAME)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start_driver(instance: Path, log: Path, *options: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "tests.faults.restore_driver", str(instance), BACKUP_NAME, *options]
    with open(log, "w") as output:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "expect"),
    [("checking", "old"), ("safety backup", "old"), ("mid-copy", "old"), ("verifying", "new")],
)
def test_restore_killed_at_any_point_leaves_old_or_new_data_and_the_next_start_says_interrupted(
    point, expect, instance, sources, tmp_path
):
    live = instance / "app.db"
    old, new = fingerprint(sources.live), fingerprint(sources.backup)
    assert old != new
    log = tmp_path / "driver.log"
    driver = start_driver(instance, log, "--stop-at", point)
    try:
        wait_until_frozen(driver, log)
        if point == "mid-copy":
            # The copy's write transaction is open and pages were written (WAL frames).
            assert Path(f"{live}-wal").stat().st_size > 10 * 1024 * 1024
        driver.send_signal(signal.SIGKILL)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait(10)
    assert driver.returncode == -signal.SIGKILL

    assert integrity(live) == "ok"
    assert fingerprint(live) == (old if expect == "old" else new)

    # The next start (any process taking the lock) closes the run with what the user must know.
    app = create_app({"INSTANCE_PATH": str(instance), "SECRET_KEY": "x", "TESTING": True})
    db = app.extensions["db"]
    killed = runs.latest_run(db, "backup_db")
    assert (killed.trigger, killed.status) == ("restore", "running")
    run, lock = claim_task(app.config, db, "backup_db", "manual")
    killed = runs.get_run(db, killed.id)
    assert (killed.status, killed.error) == ("interrupted", INTERRUPTED_RESTORE)
    outcome = complete_task(app.config, db, run, lock)
    assert outcome.error is None, outcome.error
    assert not [path for path in (instance / "backups").iterdir() if path.name.startswith(".")]
    app.extensions["db"].dispose()


@pytest.mark.slow
def test_a_full_disk_during_the_safety_backup_refuses_the_restore_before_the_live_data_is_touched(
    instance, sources, tmp_path
):
    live = instance / "app.db"
    before = fingerprint(live)
    log = tmp_path / "driver.log"
    limit = sources.live.stat().st_size // 2  # the safety backup cannot be written whole
    driver = start_driver(instance, log, "--file-size-limit", str(limit))
    assert driver.wait(120) == 0, log.read_text()

    outcome = json.loads(log.read_text().strip().splitlines()[-1])
    assert outcome["status"] == "failed"
    assert "backup folder" in outcome["error"]
    assert fingerprint(live) == before and integrity(live) == "ok"
    names = sorted(path.name for path in (instance / "backups").iterdir())
    assert names == [BACKUP_NAME]  # no partial safety backup, no staged copy
