"""Restore a backup into the live data database: checked, with a safety backup, undoable.

The order (DESIGN.md section 9): read-only checks of the chosen file; a verified safety
backup of the live data (kind ``pre-restore``); the copy into the live database with
SQLite's backup API, one journaled write transaction, so a SIGKILL leaves either the
old or the new content; a ``quick_check`` of the result, and on failure the safety
backup copied back the same way. The live file is never swapped or renamed: other
processes keep it open and see the restored rows on their next query. The caller holds
the backup lock (backups and restores are mutually single-flight).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.db import Database
from app.services import catalogue
from app.services.backup_checks import (
    BackupCheckError,
    SchemaChange,
    check_database,
    compare_schemas,
    read_header,
    sha256_of,
    staged_copy,
)
from app.services.backups import (
    COPY_STEP_PAGES,
    TEMP_SUFFIX,
    BackupError,
    BackupResult,
    perform_sqlite_backup,
    remove_with_side_files,
    resolve_backup,
)
from app.services.data_database import open_read_only, read_schema
from app.services.priority import run_at_low_priority

log = logging.getLogger(__name__)

Progress = Callable[[str, int | None], None]
# Not the backups' temporary prefix: the safety backup clears those while this one is in use.
STAGE_PREFIX = ".restore-"
BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class RestoreError(BackupError):
    """The restore did not happen (or was undone); the message says what the live data is now."""

    status_code = 500


@dataclass(frozen=True)
class RestorePreview:
    """What the confirmation page shows before the user types the name."""

    name: str
    size: int
    page_size: int
    live_page_size: int
    schema_changes: list[SchemaChange]


@dataclass(frozen=True)
class RestoreResult:
    """A finished restore: the file restored and the safety backup that undoes it."""

    name: str
    size: int
    sha256: str
    safety: BackupResult


def preview_restore(data_path: Path, backups_dir: Path, name: str) -> RestorePreview:
    """The quick, read-only look for the confirmation page (the full checks run in the restore)."""
    path = resolve_backup(backups_dir, name)
    page_size, _wal = read_header(path)
    live_schema = read_schema(data_path)
    try:
        backup_schema = read_schema(path, immutable=True)
    except sqlite3.DatabaseError as exc:
        raise BackupCheckError(f"The backup cannot be read: {exc}.") from exc
    return RestorePreview(
        name=name,
        size=path.stat().st_size,
        page_size=page_size,
        live_page_size=live_page_size(data_path),
        schema_changes=compare_schemas(backup_schema, live_schema),
    )


def restore_backup(
    data_path: Path,
    backups_dir: Path,
    db: Database,
    name: str,
    *,
    busy_timeout: float,
    report: Progress,
    host: str | None = None,
) -> RestoreResult:
    """Replace the live data with the backup ``name``; raise :class:`BackupError` if it did not happen."""
    path = resolve_backup(backups_dir, name)
    size = path.stat().st_size  # now: the file may be deleted while the restore goes on
    staged = backups_dir / f"{STAGE_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
    try:
        report("checking", None)
        source, digest = _checked_source(path, staged, data_path, db, name)
        report("safety backup", 0)
        safety = perform_sqlite_backup(
            data_path,
            backups_dir,
            kind="pre-restore",
            busy_timeout=busy_timeout,
            progress=lambda phase, percent: report("safety backup", percent if phase == "copying" else None),
        )
        catalogue.record_backup(db, safety.name, "pre-restore", safety.size, safety.sha256, safety.created_at, host)
        report("restoring", 0)
        # At normal priority: the copy holds the live database's write lock, so every writer
        # of the app waits for it to end; slowing it down would make them wait longer.
        try:
            copy_into_live(source, data_path, busy_timeout, lambda percent: report("restoring", percent))
        except BackupError as exc:
            raise RestoreError(f"{exc} The live data was not changed.") from exc
        report("verifying", None)
        problem = checked_at_low_priority(data_path)
        if problem:
            _roll_back(safety, data_path, busy_timeout, report, f"the restored database failed its check ({problem})")
    finally:
        remove_with_side_files(staged)
    log.info("restored %s into %s (safety backup %s)", name, data_path, safety.name)
    return RestoreResult(name, size, digest, safety)


def copy_into_live(source: Path, data_path: Path, busy_timeout: float, report: Callable[[int], None]) -> None:
    """Copy ``source`` over the live database in one write transaction, giving up after ``busy_timeout``.

    SQLite's backup API keeps the destination's write lock from the first step to the
    last, so the copy commits whole or not at all; a writer holding the lock past the
    deadline makes it fail with a clear message instead of waiting forever.
    """
    deadline = time.monotonic() + busy_timeout

    def step(status: int, remaining: int, total: int) -> None:
        if status in BUSY_CODES and time.monotonic() >= deadline:
            raise RestoreError(
                f"The live database stayed locked by another writer for more than {busy_timeout:g} s "
                "(RESTORE_BUSY_TIMEOUT_SECONDS)."
            )
        report(100 if not total else round(100 * (total - remaining) / total))

    target = sqlite3.connect(data_path, timeout=busy_timeout, isolation_level=None)
    try:
        with contextlib.closing(open_read_only(source, immutable=True)) as reader:
            reader.backup(target, pages=COPY_STEP_PAGES, progress=step, sleep=0.05)
    except sqlite3.DatabaseError as exc:
        raise RestoreError(f"Copying into the live database failed: {exc}.") from exc
    finally:
        target.close()


def quick_check(data_path: Path) -> str | None:
    """None when ``PRAGMA quick_check`` of the live database answers exactly ``ok``, else the problem."""
    try:
        with contextlib.closing(sqlite3.connect(data_path, timeout=30)) as conn:
            rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if rows == [("ok",)] else "; ".join(str(row[0]) for row in rows[:3])


def checked_at_low_priority(data_path: Path) -> str | None:
    """:func:`quick_check` in a low-priority thread (it reads the whole database)."""
    return run_at_low_priority(lambda relay: quick_check(data_path), name="restore-check")


def live_page_size(data_path: Path) -> int:
    """The live database's page size (the default for a database with no page yet)."""
    with contextlib.closing(open_read_only(data_path)) as conn:
        return conn.execute("PRAGMA page_size").fetchone()[0]


def _checked_source(path: Path, staged: Path, data_path: Path, db: Database, name: str) -> tuple[Path, str]:
    """Run the read-only checks; return the file to copy from (maybe a staged copy) and its sha256.

    The file work runs at low priority; the catalogue's rows are read and written here.
    """
    digest = run_at_low_priority(lambda relay: sha256_of(path), name="restore-checks")
    recorded = catalogue.recorded_sha256(db, name)
    if recorded is not None and recorded != digest:
        raise BackupCheckError(
            f"The backup {name} has changed since it was made: its sha256 no longer matches the one recorded. "
            "It was not restored."
        )
    source = run_at_low_priority(lambda relay: _staged_and_checked(path, staged, data_path), name="restore-checks")
    catalogue.mark_verified(db, name)
    return source, digest


def _staged_and_checked(path: Path, staged: Path, data_path: Path) -> Path:
    """The file to copy from: the backup, or a copy with the live page size and no WAL flag; checked."""
    page_size, wal = read_header(path)
    wanted_page_size = live_page_size(data_path)
    source = path
    if wal or page_size != wanted_page_size:
        source = staged_copy(path, staged, wanted_page_size if page_size != wanted_page_size else None)
    check_database(source)
    return source


def _roll_back(safety: BackupResult, data_path: Path, busy_timeout: float, report: Progress, why: str) -> None:
    report("rolling back", 0)
    try:
        copy_into_live(safety.path, data_path, busy_timeout, lambda percent: report("rolling back", percent))
        problem = checked_at_low_priority(data_path)
    except BackupError as exc:
        problem = str(exc)
    if problem:
        raise RestoreError(
            f"The restore failed: {why}; putting the previous data back failed too ({problem}). "
            f"The previous data is in the safety backup {safety.name}: restore it."
        )
    raise RestoreError(
        f"The restore failed: {why}. The live data was put back from the safety backup {safety.name}; nothing was lost."
    )


def remove_restore_leftovers(backups_dir: Path) -> list[str]:
    """Remove staged copies a killed restore left behind (call while holding the backup lock)."""
    try:
        leftovers = [path for path in backups_dir.iterdir() if path.name.startswith(STAGE_PREFIX)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for path in leftovers:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return [path.name for path in leftovers]
