"""Restore: checks first, a verified safety backup, one transaction into the live file, undo on failure.

Every test uses real SQLite files; a second connection (or process) reads the live data
through the restore, as another gunicorn worker would.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.services import catalogue, restore
from app.services.backup_checks import BackupCheckError, compare_schemas
from app.services.backup_tasks import restore_now, start_restore_in_background
from app.services.backups import BackupNotFound, list_backups
from app.services.data_database import journal_mode, read_schema
from app.services.restore import RestoreError, preview_restore, restore_backup
from app.services.runner import TaskBusy, run_task_now
from tests.support.data import fill_items, hold_write_lock, integrity, row_checksum
from tests.support.locks import backup_running
from tests.support.waiting import wait_for


def paths(app) -> tuple[Path, Path]:
    return Path(app.config["DATABASE_PATH"]), Path(app.config["BACKUPS_DIR"])


def backup_of(app) -> str:
    """A manual backup of the live data, as "Backup DB now" makes it; returns its name."""
    outcome = run_task_now(app.config, app.extensions["db"], "backup_db")
    assert outcome.error is None, outcome.error
    return outcome.result["file"]


def do_restore(app, name: str, **kwargs):
    data, folder = paths(app)
    phases = []
    result = restore_backup(
        data,
        folder,
        app.extensions["db"],
        name,
        busy_timeout=kwargs.pop("busy_timeout", 5),
        report=lambda phase, percent: phases.append(phase),
    )
    return result, phases


@pytest.fixture
def data(app) -> Path:
    """The live data: 200 rows in ``item``."""
    path = paths(app)[0]
    fill_items(path, 200, label="original")
    return path


def test_restore_brings_back_the_backup_rows_and_keeps_a_verified_safety_backup(app, data):
    name = backup_of(app)
    before = row_checksum(data)
    fill_items(data, 50, label="later")
    changed = row_checksum(data)

    result, phases = do_restore(app, name)

    assert row_checksum(data) == before
    assert integrity(data) == "ok"
    assert phases[0] == "checking" and "safety backup" in phases and "restoring" in phases
    assert phases[-1] == "verifying"
    safety = result.safety
    assert safety.kind == "pre-restore" and safety.path.exists()
    assert row_checksum(safety.path) == changed  # the undo holds the data as it was just before
    assert oct(safety.path.stat().st_mode & 0o777) == "0o600"
    kinds = {backup.name: backup.kind for backup in list_backups(paths(app)[1])}
    assert kinds[safety.name] == "pre-restore"
    listed = {entry.name: entry for entry in catalogue.catalogued_backups(app.extensions["db"], paths(app)[1])}
    assert listed[safety.name].sha256 == safety.sha256 and listed[safety.name].verified_at is not None


def test_the_safety_backup_undoes_the_restore(app, data):
    name = backup_of(app)
    fill_items(data, 30, label="newer")
    newer = row_checksum(data)
    result, _ = do_restore(app, name)

    do_restore(app, result.safety.name)

    assert row_checksum(data) == newer


def test_safety_backups_are_never_pruned_by_retention(make_app):
    app = make_app(BACKUP_KEEP_LAST="1")
    fill_items(paths(app)[0], 5)
    name = backup_of(app)
    result, _ = do_restore(app, name)
    config = {**app.config}
    for _ in range(3):
        outcome = run_task_now({**config}, app.extensions["db"], "backup_db")
        assert outcome.error is None
    from app.services.backups import prune_automatic_backups

    prune_automatic_backups(paths(app)[1], 1)
    assert result.safety.path.exists()


def test_another_connection_sees_the_restored_rows_on_its_next_query_without_reopening(app, data):
    name = backup_of(app)
    fill_items(data, 25, label="later")
    reader = sqlite3.connect(data)
    assert reader.execute("SELECT count(*) FROM item").fetchone() == (225,)

    do_restore(app, name)

    assert reader.execute("SELECT count(*) FROM item").fetchone() == (200,)
    reader.close()


def test_a_second_process_reading_through_the_restore_sees_old_or_new_rows_never_a_mix(app, tmp_path):
    data, _ = paths(app)
    fill_items(data, 2000, label="original", blob_bytes=2000)
    name = backup_of(app)
    with sqlite3.connect(data) as conn:
        conn.execute("UPDATE item SET label = 'changed'")
    conn.close()
    log = tmp_path / "reader.log"
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], timeout=30)\n"
            "seen = set()\n"
            "end = time.monotonic() + 60\n"
            "while time.monotonic() < end:\n"
            "    labels = tuple(sorted(r[0] for r in c.execute('SELECT DISTINCT label FROM item')))\n"
            "    seen.add(labels)\n"
            "    if labels == ('original',): break\n"
            "print(sorted(seen))\n",
            str(data),
        ],
        stdout=open(log, "w"),  # noqa: SIM115 - closed with the process
    )
    time.sleep(0.2)
    do_restore(app, name)
    reader.wait(60)

    seen = log.read_text().strip()
    assert seen == "[('changed',), ('original',)]", seen


def test_the_schema_preview_lists_what_differs_from_the_live_data(app, data):
    name = backup_of(app)
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE extra (x)")
        conn.execute("CREATE VIEW labels AS SELECT label FROM item")
        conn.execute("DROP TABLE item")
        conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, label TEXT, payload BLOB, added TEXT)")
    conn.close()

    preview = preview_restore(*paths(app), name)

    changes = {(change.type, change.name): change.change for change in preview.schema_changes}
    assert changes == {
        ("table", "extra"): "only in the live data",
        ("view", "labels"): "only in the live data",
        ("table", "item"): "defined differently",
    }


def test_compare_schemas_ignores_whitespace_only_differences(tmp_path):
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    sqlite3.connect(first).execute("CREATE TABLE t (x  INTEGER)")
    sqlite3.connect(second).execute("CREATE TABLE t (x INTEGER)")
    assert compare_schemas(read_schema(first), read_schema(second)) == []


def test_a_page_size_mismatch_is_normalised_on_a_staged_copy_and_the_live_page_size_kept(app, data):
    _, folder = paths(app)
    folder.mkdir()
    other = folder / "backup-20260101T000000.000000Z-uploaded.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA page_size = 8192")
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, label TEXT, payload BLOB)")
    conn.executemany("INSERT INTO item (label) VALUES (?)", [("eight",)] * 40)
    conn.commit()
    conn.close()
    original = other.read_bytes()

    preview = preview_restore(data, folder, other.name)
    do_restore(app, other.name)

    assert (preview.page_size, preview.live_page_size) == (8192, 4096)
    with sqlite3.connect(data) as check:
        assert check.execute("PRAGMA page_size").fetchone() == (4096,)
        assert check.execute("SELECT count(*), min(label) FROM item").fetchone() == (40, "eight")
    assert other.read_bytes() == original  # the listed file itself is never changed
    assert not [path for path in folder.iterdir() if path.name.startswith(".")]


@pytest.mark.parametrize("mode", ["wal", "delete"])
def test_the_live_database_keeps_its_journal_mode(make_app, tmp_path, mode):
    live = tmp_path / "other-app" / "data.db"
    live.parent.mkdir()
    conn = sqlite3.connect(live)
    conn.execute(f"PRAGMA journal_mode = {mode}")
    conn.close()
    fill_items(live, 20)
    app = make_app(DATABASE_URL=f"sqlite:///{live}")
    name = backup_of(app)
    fill_items(live, 5)

    do_restore(app, name)

    assert journal_mode(live) == ("wal" if mode == "wal" else "delete")
    with sqlite3.connect(live) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == mode
        assert check.execute("SELECT count(*) FROM item").fetchone() == (20,)


def test_a_writer_holding_the_live_database_past_the_deadline_fails_the_restore_readably(app, data):
    name = backup_of(app)
    fill_items(data, 10, label="current")
    current = row_checksum(data)
    holder = hold_write_lock(data, seconds=8)
    started = time.monotonic()
    try:
        with pytest.raises(RestoreError) as caught:
            do_restore(app, name, busy_timeout=1)
        waited = time.monotonic() - started
    finally:
        holder.wait(20)

    assert 1 <= waited < 6  # the deadline, not the writer's 8 s
    assert "stayed locked by another writer for more than 1 s" in str(caught.value)
    assert "The live data was not changed." in str(caught.value)
    assert row_checksum(data) == current


def test_a_backup_changed_since_it_was_made_is_refused_before_anything_is_touched(app, data):
    name = backup_of(app)
    backup = paths(app)[1] / name
    with sqlite3.connect(backup) as conn:  # still a valid database, but not the one we made
        conn.execute("INSERT INTO item (label) VALUES ('tampered')")
    conn.close()
    current = row_checksum(data)

    with pytest.raises(BackupCheckError, match="sha256 no longer matches"):
        do_restore(app, name)

    assert row_checksum(data) == current
    assert [b.kind for b in list_backups(paths(app)[1])] == ["manual"]  # no safety backup either


def test_a_damaged_backup_fails_the_integrity_check_and_nothing_changes(app, data, tmp_path):
    _, folder = paths(app)
    fill_items(data, 300, blob_bytes=500)
    damaged = folder / "backup-20260101T000000.000000Z-uploaded.sqlite3"
    run_task_now(app.config, app.extensions["db"], "backup_db")
    source = next(path for path in folder.iterdir() if path.name.endswith("manual.sqlite3"))
    raw = bytearray(source.read_bytes())
    raw[4096 : 4096 + 12] = b"\xff" * 12  # the header of page 2, the root of table "item"
    damaged.write_bytes(bytes(raw))
    current = row_checksum(data)

    with pytest.raises(BackupCheckError) as caught:
        do_restore(app, damaged.name)

    assert "integrity check" in str(caught.value) or "damaged" in str(caught.value)
    assert row_checksum(data) == current


def test_a_failed_final_check_puts_the_safety_backup_back(app, data, monkeypatch):
    """The copy succeeded but the result fails its check (a disk returning garbage): undo it."""
    name = backup_of(app)
    fill_items(data, 7, label="current")
    current = row_checksum(data)
    checks = iter(["1 page is damaged", None])  # the restored file fails, the put-back passes
    monkeypatch.setattr(restore, "quick_check", lambda path: next(checks))

    with pytest.raises(RestoreError) as caught:
        do_restore(app, name)

    message = str(caught.value)
    assert "failed its check (1 page is damaged)" in message
    assert "put back from the safety backup backup-" in message and "nothing was lost" in message
    assert row_checksum(data) == current


def test_unknown_or_foreign_names_are_not_found(app, data):
    for name in ("../app.db", "backup-x.sqlite3", "app.db", ""):
        with pytest.raises(BackupNotFound):
            do_restore(app, name)


def test_a_symlink_named_like_a_backup_is_not_restored(app, data, tmp_path):
    _, folder = paths(app)
    folder.mkdir(exist_ok=True)
    elsewhere = tmp_path / "elsewhere.db"
    fill_items(elsewhere, 3)
    link = folder / "backup-20260101T000000.000000Z-manual.sqlite3"
    link.symlink_to(elsewhere)
    with pytest.raises(BackupNotFound):
        do_restore(app, link.name)


def test_restores_and_backups_are_mutually_single_flight(app, data):
    name = backup_of(app)
    with backup_running(app), pytest.raises(TaskBusy):
        start_restore_in_background(app.config, app.extensions["db"], name)
    run = start_restore_in_background(app.config, app.extensions["db"], name)
    with pytest.raises(TaskBusy) as caught:
        run_task_now(app.config, app.extensions["db"], "backup_db")
    assert str(caught.value) == "A restore is already running."
    from app.services import runs

    finished = wait_for(lambda: (r := runs.get_run(app.extensions["db"], run.id)).status != "running" and r, 30)
    assert (finished.status, finished.trigger, finished.file) == ("success", "restore", name)
    assert finished.detail.startswith("Safety backup of the previous data: backup-")


def test_restore_run_is_recorded_with_trigger_restore_and_not_counted_as_a_backup(app, data):
    from app.services import runs

    name = backup_of(app)
    outcome = restore_now(app.config, app.extensions["db"], name)

    assert outcome.error is None
    assert (outcome.run.trigger, outcome.run.status) == ("restore", "success")
    last_backup = runs.latest_run(app.extensions["db"], "backup_db", status="success", backups_only=True)
    assert last_backup.trigger == "manual"


def test_a_backup_deleted_while_it_is_restored_does_not_fail_the_finished_restore(app, data):
    name = backup_of(app)
    path = paths(app)[1] / name
    before = row_checksum(data)
    fill_items(data, 5, label="later")

    def delete_after_the_copy(phase: str, percent: int | None) -> None:
        if phase == "verifying" and path.exists():
            path.unlink()  # e.g. "Delete" in another tab while the result is checked

    result = restore_backup(*paths(app), app.extensions["db"], name, busy_timeout=5, report=delete_after_the_copy)

    assert result.size > 0
    assert row_checksum(data) == before
