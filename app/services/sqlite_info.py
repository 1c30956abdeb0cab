"""The SQLite library in use, and whether it has the WAL-reset corruption fix (sqlite.org/wal.html)."""

from __future__ import annotations

import sqlite3

# Versions before 3.51.3 can corrupt a WAL database in a rare race (sqlite.org/wal.html).
WAL_RESET_FIXED = (3, 51, 3)


def wal_reset_bug_fixed() -> bool:
    """Whether the SQLite library this process uses has the WAL-reset fix."""
    return sqlite3.sqlite_version_info >= WAL_RESET_FIXED


def wal_reset_warning() -> str | None:
    """A warning fit for the UI and health output when the fix is missing, else None."""
    if wal_reset_bug_fixed():
        return None
    fixed = ".".join(map(str, WAL_RESET_FIXED))
    return (
        f"SQLite {sqlite3.sqlite_version} is older than {fixed}: in a rare race it can corrupt a database in WAL "
        f"mode (sqlite.org/wal.html). Verified backups guard against the damage; upgrade SQLite "
        f"(or Python's sqlite3) to {fixed} or later when you can."
    )
