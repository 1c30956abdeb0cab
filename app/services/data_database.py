"""The data database: the SQLite file that is backed up and restored.

It may belong to another application (``DATABASE_URL`` can point anywhere), so this app
creates no tables in it and changes none of its persistent settings (journal mode, page
size): it only reads it for backups and writes it during a confirmed restore.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SchemaObject:
    """A table, index, view or trigger, as ``sqlite_master`` lists it."""

    type: str
    name: str
    sql: str | None


def ensure_data_database(path: Path) -> bool:
    """Create an empty database (owner-only, WAL) when none exists yet; True when one was made.

    A fresh install has no data yet; an existing file is never changed.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker made it first
        return False
    os.close(fd)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
    return True


def schema_objects(conn: sqlite3.Connection) -> dict[tuple[str, str], SchemaObject]:
    """The user-visible schema of a connection's main database, keyed by (type, name)."""
    rows = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
    ).fetchall()
    return {(kind, name): SchemaObject(kind, name, sql) for kind, name, sql in rows}


def read_schema(path: Path, immutable: bool = False) -> dict[tuple[str, str], SchemaObject]:
    """The schema of the database at ``path``, read without writing anything."""
    with closing(open_read_only(path, immutable)) as conn:
        return schema_objects(conn)


def open_read_only(path: Path, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection that runs nothing the file's schema asks for.

    ``immutable`` is for files nobody writes (backups, staged uploads): no locks, and no
    ``-wal``/``-shm`` files are created beside them, whatever their header says.
    """
    mode = "ro&immutable=1" if immutable else "ro"
    conn = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, isolation_level=None)
    # sqlite.org/security.html: functions in views, triggers and CHECKs of an untrusted
    # file must not run with the app's privileges; page cells are checked as they are read.
    conn.execute("PRAGMA trusted_schema = OFF")
    conn.execute("PRAGMA cell_size_check = ON")
    return conn


def journal_mode(path: Path) -> str:
    """The journal mode the file records ("wal" or a rollback mode), read from its header."""
    with open(path, "rb") as handle:
        header = handle.read(20)
    return "wal" if len(header) == 20 and header[18] == 2 and header[19] == 2 else "delete"
