"""Data-database helpers for restore tests: fill a table, fingerprint the rows, write in another process."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path


def fill_items(database: Path, rows: int, label: str = "v", blob_bytes: int = 0) -> None:
    """Create table ``item`` if missing and add ``rows`` rows labelled ``label``."""
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS item (id INTEGER PRIMARY KEY, label TEXT, payload BLOB)")
        conn.executemany("INSERT INTO item (label, payload) VALUES (?, randomblob(?))", [(label, blob_bytes)] * rows)
    conn.close()


def row_checksum(database: Path) -> str:
    """A sha256 over every row of every table, in a stable order (what a restore must bring back)."""
    digest = hashlib.sha256()
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            digest.update(table.encode())
            for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid'):
                digest.update(repr(row).encode())
    finally:
        conn.close()
    return digest.hexdigest()


def integrity(database: Path) -> str:
    """``PRAGMA integrity_check`` of a file, joined."""
    conn = sqlite3.connect(database, timeout=30)
    try:
        return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def hold_write_lock(database: Path, seconds: float) -> subprocess.Popen:
    """A process holding a write transaction on ``database`` for ``seconds``; returns once it holds it."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None);"
            " c.execute('BEGIN IMMEDIATE'); c.execute('CREATE TABLE IF NOT EXISTS held (x)');"
            " print('held', flush=True); time.sleep(float(sys.argv[2])); c.execute('ROLLBACK')",
            str(database),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder
