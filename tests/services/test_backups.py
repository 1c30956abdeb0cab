"""Verified SQLite backups: consistency under a concurrent writer, atomicity, names, retention, faults."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import sqlite3
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.services import backups
from app.services.backups import (
    BACKUP_NAME,
    BackupError,
    BackupNotFound,
    BackupSourceError,
    BackupTargetError,
    delete_backup,
    list_backups,
    perform_sqlite_backup,
    prune_automatic_backups,
    resolve_backup,
)
from app.services.locks import FileLock

# fork: children start in milliseconds and need nothing but the functions below.
mp = multiprocessing.get_context("fork")

BLOB_SIZE = 4096
SEED_ROWS = 800  # ~3.5 MB of blobs: dozens of 64-page copy steps


# --- helpers -------------------------------------------------------------------------


def make_database(path: Path, rows: int = 3, journal_mode: str = "wal") -> Path:
    """A real SQLite file with a table ``item(id, payload)`` holding ids 1..rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode = {journal_mode}")
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO item VALUES (?, ?)", ((i, os.urandom(BLOB_SIZE)) for i in range(1, rows + 1)))
    conn.execute("COMMIT")
    conn.close()
    return path


def query(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temp_files(root: Path) -> list[Path]:
    return sorted(root.rglob(".backup-*.tmp"))


@pytest.fixture
def database(tmp_path) -> Path:
    return make_database(tmp_path / "app.db")


@pytest.fixture
def backups_dir(tmp_path) -> Path:
    return tmp_path / "backups"


# --- child processes -------------------------------------------------------------------


def insert_rows_until_stopped(path: str, first_id: int, committed, stop) -> None:
    """Insert one blob row per committed transaction; publish the last committed id."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.execute("PRAGMA synchronous = NORMAL")
    row_id = first_id
    while not stop.is_set():
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO item VALUES (?, ?)", (row_id, os.urandom(BLOB_SIZE)))
        conn.execute("COMMIT")
        committed.value = row_id
        row_id += 1
    conn.close()


def hold_write_lock(path: str, journal_mode: str, ready, release) -> None:
    """Keep a write transaction open so nobody else can read or write the database."""
    conn = sqlite3.connect(path, isolation_level=None)
    if journal_mode == "wal":
        # In WAL mode readers pass a plain writer; exclusive locking mode shuts them out.
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN IMMEDIATE")
    else:
        conn.execute("BEGIN EXCLUSIVE")
    conn.execute("INSERT INTO item VALUES (NULL, x'00')")
    ready.set()
    release.wait(30)
    conn.close()


def hold_file_lock(path: str, ready) -> None:
    lock = FileLock(Path(path))
    assert lock.try_acquire()
    ready.set()
    time.sleep(60)


# --- consistency -----------------------------------------------------------------------


def test_backup_during_concurrent_writes_is_a_committed_state(tmp_path, backups_dir, monkeypatch):
    """A stepped backup while another process commits is intact and equals one committed state."""
    monkeypatch.setattr(backups, "COPY_STEP_PAGES", 64)
    database = make_database(tmp_path / "app.db", rows=SEED_ROWS)
    committed = mp.Value("q", SEED_ROWS)
    stop = mp.Event()
    writer = mp.Process(target=insert_rows_until_stopped, args=(str(database), SEED_ROWS + 1, committed, stop))
    writer.start()
    steps = []

    def wait_for_a_commit(phase, percent):
        """Between copy steps, let the writer commit at least once more."""
        if phase != "copying" or not percent:
            return
        assert len(steps) < 200, "the stepped copy keeps restarting"
        seen = committed.value
        deadline = time.monotonic() + 5
        while committed.value == seen and time.monotonic() < deadline:
            time.sleep(0.001)
        steps.append((percent, seen, committed.value))

    try:
        deadline = time.monotonic() + 10
        while committed.value < SEED_ROWS + 5 and time.monotonic() < deadline:
            time.sleep(0.005)
        before = query(database, "SELECT count(*) FROM item")[0][0]
        result = perform_sqlite_backup(database, backups_dir, progress=wait_for_a_commit)
        after = query(database, "SELECT count(*) FROM item")[0][0]
    finally:
        stop.set()
        writer.join(10)
    assert writer.exitcode == 0

    assert len(steps) >= 10, "the copy should have run in many steps"
    assert steps[-1][2] > steps[0][1], "the writer should have committed while the copy ran"
    assert steps[-1][0] == 100
    assert query(result.path, "PRAGMA integrity_check") == [("ok",)]
    assert query(result.path, "PRAGMA journal_mode") == [("delete",)]
    ids = [row[0] for row in query(result.path, "SELECT id FROM item ORDER BY id")]
    n = len(ids)
    assert ids == list(range(1, n + 1))
    assert before > SEED_ROWS
    assert before <= n < after, (before, n, after)


# --- atomicity -------------------------------------------------------------------------


class InjectedBackupError(BackupError):
    pass


class InjectedCrash(RuntimeError):
    pass


@pytest.mark.parametrize("phase", ["copying", "verifying"])
@pytest.mark.parametrize("error", [InjectedBackupError, InjectedCrash])
def test_failed_backup_leaves_no_temp_file_and_older_backups_untouched(
    database, backups_dir, monkeypatch, phase, error
):
    """A failure after the temp file exists removes it and leaves earlier backups byte-identical."""
    monkeypatch.setattr(backups, "COPY_STEP_PAGES", 1)
    older = [
        perform_sqlite_backup(database, backups_dir, kind="manual").path,
        perform_sqlite_backup(database, backups_dir, kind="auto", keep_last=5).path,
    ]
    hashes = {path: sha256(path) for path in older}
    listed = [backup.name for backup in list_backups(backups_dir)]
    seen_temp = []

    def fail(current, percent):
        if current == phase and (phase != "copying" or (percent or 0) > 0):
            seen_temp.extend(temp_files(backups_dir))
            raise error("injected")

    with pytest.raises(error, match="injected"):
        perform_sqlite_backup(database, backups_dir, kind="auto", keep_last=1, progress=fail)

    assert len(seen_temp) == 1, "the failure must strike after the temporary file exists"
    assert temp_files(backups_dir) == []
    assert [backup.name for backup in list_backups(backups_dir)] == listed
    assert sorted(os.listdir(backups_dir)) == sorted(path.name for path in older)
    assert {path: sha256(path) for path in older} == hashes


# --- the new file --------------------------------------------------------------------


def test_backup_file_is_readable_by_owner_only(database, backups_dir):
    """Backups hold the whole database, so they are created with mode 0600."""
    result = perform_sqlite_backup(database, backups_dir)
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600


def test_backup_result_matches_file_and_holds_source_data(database, backups_dir):
    """sha256 and size describe the file on disk, and the file is a copy of the source."""
    result = perform_sqlite_backup(database, backups_dir)
    assert result.path.parent == backups_dir
    assert result.sha256 == sha256(result.path)
    assert result.size == result.path.stat().st_size > 0
    assert result.kind == "manual"
    assert result.as_dict()["file"] == result.name
    assert query(result.path, "SELECT id, payload FROM item ORDER BY id") == query(
        database, "SELECT id, payload FROM item ORDER BY id"
    )


def test_names_stay_unique_and_list_newest_first(database, backups_dir):
    """Five backups in a tight loop get five distinct valid names, listed newest first."""
    results = [perform_sqlite_backup(database, backups_dir) for _ in range(5)]
    names = [result.name for result in results]
    assert len(set(names)) == 5
    assert all(BACKUP_NAME.match(name) for name in names)
    assert [backup.name for backup in list_backups(backups_dir)] == names[::-1]


def test_same_timestamp_never_overwrites_an_existing_backup(database, backups_dir, monkeypatch):
    """When the clock repeats an instant, the second backup takes the next name instead of replacing."""
    instant = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    calls = []

    class RepeatingClock(datetime):
        @classmethod
        def now(cls, tz=None):
            calls.append(tz)
            # The first two calls return the same instant, later ones move on by 1 µs each.
            return instant + timedelta(microseconds=max(0, len(calls) - 2))

    monkeypatch.setattr(backups, "datetime", RepeatingClock)
    first = perform_sqlite_backup(database, backups_dir)
    first_hash = sha256(first.path)
    make_database(database.with_name("other.db"), rows=1)
    second = perform_sqlite_backup(database.with_name("other.db"), backups_dir)

    assert first.name == "backup-20240501T120000.123456Z-manual.sqlite3"
    assert second.name == "backup-20240501T120000.123457Z-manual.sqlite3"
    assert sha256(first.path) == first_hash
    assert query(second.path, "SELECT count(*) FROM item") == [(1,)]


# --- retention -------------------------------------------------------------------------


def test_retention_keeps_newest_automatic_and_all_manual_backups(database, backups_dir):
    """keep_last=2 after 4 automatic and 1 manual backup: the 2 newest automatic and the manual remain."""
    manual = perform_sqlite_backup(database, backups_dir, kind="manual")
    autos = [perform_sqlite_backup(database, backups_dir, kind="auto", keep_last=2) for _ in range(4)]

    assert [result.pruned for result in autos] == [(), (), (autos[0].name,), (autos[1].name,)]
    remaining = {backup.name for backup in list_backups(backups_dir)}
    assert remaining == {manual.name, autos[2].name, autos[3].name}
    assert sorted(os.listdir(backups_dir)) == sorted(remaining)


def test_prune_returns_removed_names_and_spares_manual_backups(database, backups_dir):
    """prune_automatic_backups removes the oldest automatic backups only and says which."""
    autos = [perform_sqlite_backup(database, backups_dir, kind="auto").name for _ in range(4)]
    manual = perform_sqlite_backup(database, backups_dir, kind="manual").name

    removed = prune_automatic_backups(backups_dir, 2)

    assert sorted(removed) == sorted(autos[:2])
    assert {backup.name for backup in list_backups(backups_dir)} == {manual, *autos[2:]}
    assert prune_automatic_backups(backups_dir, 2) == []


# --- names from outside --------------------------------------------------------------

FOREIGN_NAMES = [
    "../app.db",
    "/etc/passwd",
    "backup-x.sqlite3",
    "",
    "backup-20240101T000000.000000Z-manual.sqlite3",  # valid shape, does not exist
    "backup-20240101T000000.000000Z-other.sqlite3",
    "../backups/backup-20240101T000000.000000Z-manual.sqlite3",
]


@pytest.mark.parametrize("name", FOREIGN_NAMES)
@pytest.mark.parametrize("operation", [resolve_backup, delete_backup])
def test_foreign_or_traversal_names_are_not_found(database, backups_dir, operation, name):
    """Only names we make, inside the folder, resolve; nothing else is touched."""
    kept = perform_sqlite_backup(database, backups_dir)
    before = sorted(os.listdir(database.parent))

    with pytest.raises(BackupNotFound):
        operation(backups_dir, name)

    assert database.is_file()
    assert kept.path.is_file()
    assert sorted(os.listdir(database.parent)) == before


@pytest.mark.parametrize("operation", [resolve_backup, delete_backup])
def test_symlink_named_like_a_backup_is_not_a_backup(database, backups_dir, operation):
    """A symlink with a backup's name pointing at the database is refused, and neither file is removed."""
    backups_dir.mkdir()
    link = backups_dir / "backup-20240101T000000.000000Z-manual.sqlite3"
    link.symlink_to(database)
    database_hash = sha256(database)

    with pytest.raises(BackupNotFound):
        operation(backups_dir, link.name)

    assert link.is_symlink()
    assert sha256(database) == database_hash
    assert list_backups(backups_dir) == []


@pytest.mark.parametrize("operation", [resolve_backup, delete_backup])
def test_name_with_trailing_newline_is_not_a_backup(database, backups_dir, operation):
    """A foreign file whose name is a backup name plus a newline is neither listed nor resolved."""
    backups_dir.mkdir()
    foreign = backups_dir / "backup-20240101T000000.000000Z-manual.sqlite3\n"
    foreign.write_bytes(b"not ours")

    with pytest.raises(BackupNotFound):
        operation(backups_dir, foreign.name)

    assert foreign.read_bytes() == b"not ours"
    assert list_backups(backups_dir) == []


def test_delete_removes_exactly_the_named_backup(database, backups_dir):
    """delete_backup removes the backup it names and no other."""
    first = perform_sqlite_backup(database, backups_dir)
    second = perform_sqlite_backup(database, backups_dir)

    delete_backup(backups_dir, first.name)

    assert [backup.name for backup in list_backups(backups_dir)] == [second.name]
    with pytest.raises(BackupNotFound):
        resolve_backup(backups_dir, first.name)


# --- folder faults ---------------------------------------------------------------------


def test_folder_under_a_regular_file_is_a_target_error(tmp_path, database):
    """A backup folder that cannot be created because its parent is a file names the folder."""
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "backups"

    with pytest.raises(BackupTargetError) as caught:
        perform_sqlite_backup(database, target)

    assert str(target) in str(caught.value)
    assert "cannot be created" in str(caught.value)
    assert temp_files(tmp_path) == []
    assert (tmp_path / "afile").read_text() == "x"


def test_regular_file_at_the_folder_path_is_a_target_error(tmp_path, database):
    """A file where the backup folder should be is reported as such and left alone."""
    target = tmp_path / "backups"
    target.write_text("x")

    with pytest.raises(BackupTargetError, match="is a file") as caught:
        perform_sqlite_backup(database, target)

    assert str(target) in str(caught.value)
    assert target.read_text() == "x"
    assert temp_files(tmp_path) == []


def test_missing_folder_is_created_private_and_the_backup_succeeds(tmp_path, database):
    """A missing backup folder whose parent exists is created with mode 0700."""
    target = tmp_path / "backups"

    result = perform_sqlite_backup(database, target)

    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert result.path.parent == target
    assert query(result.path, "PRAGMA integrity_check") == [("ok",)]


def test_stale_temp_files_are_removed_by_the_next_backup(database, backups_dir):
    """Temporary files a killed backup left behind disappear; foreign files stay."""
    backups_dir.mkdir()
    (backups_dir / ".backup-deadbeef.tmp").write_bytes(b"half a backup")
    (backups_dir / "notes.txt").write_text("keep me")

    result = perform_sqlite_backup(database, backups_dir)

    assert sorted(os.listdir(backups_dir)) == sorted([result.name, "notes.txt"])


# --- source faults ---------------------------------------------------------------------


def test_missing_database_is_a_source_error_and_writes_nothing(tmp_path, backups_dir):
    """Backing up a database file that does not exist fails and leaves the folder empty."""
    with pytest.raises(BackupSourceError, match="does not exist"):
        perform_sqlite_backup(tmp_path / "missing.db", backups_dir)

    assert list(backups_dir.iterdir()) == []
    assert not (tmp_path / "missing.db").exists()


def test_file_that_is_not_a_database_is_a_source_error(tmp_path, backups_dir):
    """Random bytes are reported as not a SQLite database and produce no backup."""
    junk = tmp_path / "app.db"
    junk.write_bytes(b"\x00garbage" + os.urandom(8192))

    with pytest.raises(BackupSourceError, match="not a SQLite database"):
        perform_sqlite_backup(junk, backups_dir)

    assert list(backups_dir.iterdir()) == []


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_database_locked_by_another_process_times_out_as_source_error(tmp_path, backups_dir, journal_mode):
    """A database held exclusively by another process fails after the busy timeout, not forever."""
    database = make_database(tmp_path / "app.db", journal_mode=journal_mode)
    ready, release = mp.Event(), mp.Event()
    holder = mp.Process(target=hold_write_lock, args=(str(database), journal_mode, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        started = time.monotonic()
        with pytest.raises(BackupSourceError, match=r"locked .* more than 1 s"):
            perform_sqlite_backup(database, backups_dir, busy_timeout=1)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join(10)

    assert 0.9 <= elapsed < 5
    assert list(backups_dir.iterdir()) == []


# --- the single-flight lock ------------------------------------------------------------


def test_two_file_locks_on_one_path_conflict_in_one_process(tmp_path):
    """A second FileLock instance cannot take a lock the first holds, and can once it is released."""
    path = tmp_path / "app.db.backup.lock"
    first, second = FileLock(path), FileLock(path)

    assert first.try_acquire()
    assert not second.try_acquire()
    assert not second.held
    first.release()
    assert second.try_acquire()
    second.release()


def test_file_lock_is_freed_when_the_holder_is_killed(tmp_path):
    """The kernel drops the lock of a SIGKILLed holder, so a crashed worker never blocks backups."""
    path = tmp_path / "app.db.backup.lock"
    ready = mp.Event()
    holder = mp.Process(target=hold_file_lock, args=(str(path), ready))
    holder.start()
    try:
        assert ready.wait(10)
        lock = FileLock(path)
        assert not lock.try_acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)

    assert holder.exitcode == -signal.SIGKILL
    assert lock.acquire(timeout=5, poll=0.01)
    lock.release()


def test_listing_skips_a_name_with_an_impossible_date(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    (folder / "backup-20261399T000000.000000Z-auto.sqlite3").write_bytes(b"x")
    (folder / "backup-20261128T000000.000000Z-auto.sqlite3").write_bytes(b"y")
    assert [b.name for b in list_backups(folder)] == ["backup-20261128T000000.000000Z-auto.sqlite3"]
