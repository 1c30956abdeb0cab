"""Read an app's SQLite database from a test, as another process would."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def query(database: Path, sql: str, *args, readonly: bool = False) -> list[tuple]:
    """Run one statement on ``database`` in a fresh connection and return its rows."""
    if readonly:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    else:
        connection = sqlite3.connect(database, timeout=10)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()
