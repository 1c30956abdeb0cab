"""Read-only checks of a backup before it may be restored (a listed backup or an upload).

Every check opens the file read-only with ``trusted_schema=OFF`` and ``cell_size_check=ON``
(sqlite.org/security.html), so a crafted file cannot run functions from its views,
triggers, CHECK constraints or index expressions. A file passes when its header is
SQLite's, it is as long as its header says, ``PRAGMA integrity_check`` answers exactly
``ok``, and every view can be prepared without calling an unsafe function.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from app.services.backups import BackupError, fsync_path
from app.services.data_database import SchemaObject, open_read_only, schema_objects

SQLITE_HEADER = b"SQLite format 3\x00"
WAL_MAGIC = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")
HEADER_SIZE = 100


class BackupCheckError(BackupError):
    """The file is not a restorable SQLite database; the message says why, for a person."""

    status_code = 400


@dataclass(frozen=True)
class SchemaChange:
    """One table, view, trigger or index that differs between a backup and the live data."""

    type: str
    name: str
    change: str  # "only in the backup" | "only in the live data" | "defined differently"


@dataclass(frozen=True)
class CheckedFile:
    """What the checks learnt about a file that passed them."""

    path: Path
    size: int
    page_size: int
    wal_header: bool
    schema: dict[tuple[str, str], SchemaObject] = field(repr=False)


def read_header(path: Path) -> tuple[int, bool]:
    """(page size, header says WAL) of a SQLite file; :class:`BackupCheckError` when it is not one."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header = handle.read(HEADER_SIZE)
    except OSError as exc:
        raise BackupCheckError(f"The file could not be read: {exc.strerror}.") from exc
    if size == 0:
        raise BackupCheckError("The file is empty (0 bytes): it is not a database backup.")
    if header[:4] in WAL_MAGIC:
        raise BackupCheckError(
            "This is a SQLite write-ahead log (a -wal file), not a database: choose the database file "
            "itself, or a backup made by this app."
        )
    if not header.startswith(SQLITE_HEADER):
        raise BackupCheckError(
            "The file is not a SQLite database (it does not start with SQLite's header): it may be "
            "encrypted, compressed or another kind of file."
        )
    if len(header) < HEADER_SIZE:
        raise BackupCheckError("The file is truncated: it is shorter than a SQLite header.")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise BackupCheckError("The file's header is damaged (impossible page size).")
    pages = int.from_bytes(header[28:32], "big")
    header_count_valid = header[24:28] == header[92:96] and pages > 0
    if header_count_valid and size < pages * page_size:
        raise BackupCheckError(
            f"The file is truncated: its header says {pages * page_size} bytes, but it has only {size}."
        )
    if size % page_size:
        raise BackupCheckError(f"The file is truncated or damaged: {size} bytes is not a whole number of pages.")
    return page_size, header[18] == 2 and header[19] == 2


def check_database(path: Path) -> CheckedFile:
    """Run every read-only check on ``path``; raise :class:`BackupCheckError` naming the first failure.

    The file must not be in WAL mode (see :func:`staged_copy`): a read-only connection
    cannot open a WAL database without its ``-shm`` file.
    """
    page_size, wal = read_header(path)
    if wal:
        raise BackupCheckError("The file is in WAL mode; stage a copy before checking it.")
    try:
        with closing(open_read_only(path, immutable=True)) as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            if rows != [("ok",)]:
                raise BackupCheckError(f"The file failed SQLite's integrity check: {_problems(rows)}.")
            schema = schema_objects(conn)
            _check_views(conn, schema)
    except sqlite3.DatabaseError as exc:
        raise BackupCheckError(_database_error(exc)) from exc
    return CheckedFile(path, path.stat().st_size, page_size, wal, schema)


def staged_copy(source: Path, target: Path, page_size: int | None = None) -> Path:
    """Copy ``source`` to ``target`` as a rollback-journal database, optionally with another page size.

    Used when the file's header says WAL, or its page size differs from the live
    database's (the backup API cannot copy between page sizes into a WAL database, and
    would change a rollback-journal database's page size): the original is never changed.
    """
    shutil.copyfile(source, target)
    os.chmod(target, 0o600)
    with open(target, "r+b") as handle:
        handle.seek(18)
        handle.write(b"\x01\x01")  # legacy (rollback) read and write versions: not WAL
    if page_size is not None:
        with closing(sqlite3.connect(target, isolation_level=None)) as conn:
            conn.execute("PRAGMA trusted_schema = OFF")
            conn.execute(f"PRAGMA page_size = {int(page_size)}")
            conn.execute("VACUUM")
    fsync_path(target)
    return target


def compare_schemas(
    backup: dict[tuple[str, str], SchemaObject], live: dict[tuple[str, str], SchemaObject]
) -> list[SchemaChange]:
    """Tables, views, triggers and indexes that differ between a backup and the live data."""
    changes = []
    for key in sorted(backup.keys() | live.keys()):
        kind, name = key
        if key not in live:
            changes.append(SchemaChange(kind, name, "only in the backup"))
        elif key not in backup:
            changes.append(SchemaChange(kind, name, "only in the live data"))
        elif _normalised(backup[key].sql) != _normalised(live[key].sql):
            changes.append(SchemaChange(kind, name, "defined differently"))
    return changes


def sha256_of(path: Path) -> str:
    """The file's sha256, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_views(conn: sqlite3.Connection, schema: dict[tuple[str, str], SchemaObject]) -> None:
    # Preparing a view compiles its SQL; with trusted_schema=OFF a function that is not
    # innocuous (load_extension, fts3_tokenizer, an application's own) is refused here.
    for kind, name in schema:
        if kind != "view":
            continue
        quoted = name.replace('"', '""')
        try:
            conn.execute(f'SELECT * FROM "{quoted}" LIMIT 0').fetchall()
        except sqlite3.OperationalError as exc:
            if "unsafe use of" in str(exc):
                raise BackupCheckError(
                    f"The view {name!r} calls a function that is not safe in a database file ({exc}); "
                    "this file is refused."
                ) from exc


def _problems(rows: list[tuple]) -> str:
    problems = [line for row in rows for line in str(row[0]).splitlines() if not line.startswith("***")]
    return "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")


def _database_error(exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    if "not a database" in text or "encrypted" in text:
        return "The file is not a SQLite database, or it is encrypted."
    if "malformed" in text or "corrupt" in text:
        return f"The file is damaged: {text}."
    return f"The file could not be checked: {text}."


def _normalised(sql: str | None) -> str:
    return " ".join((sql or "").split())
