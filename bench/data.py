"""The benchmark's own SQLite database: mixed text and blobs with an index, in WAL mode.

Built once per size and cached under ``bench/data/`` (git-ignored), so re-runs are fast.
The build is deterministic (seeded) and published by rename, so an interrupted build never
leaves a half-made database behind as the cache.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
SCHEMA_VERSION = 1
BATCH_ROWS = 2_000
WORDS = (
    "backup",
    "schedule",
    "verified",
    "snapshot",
    "sqlite",
    "journal",
    "page",
    "cache",
    "worker",
    "leader",
    "cron",
    "daily",
    "weekly",
    "interval",
    "status",
    "history",
    "retention",
    "restore",
    "archive",
    "settings",
    "block",
    "partial",
    "fragment",
    "polling",
)

SCHEMA = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    payload BLOB,
    created_at TEXT NOT NULL
);
CREATE INDEX items_kind_created ON items (kind, created_at);
"""


@dataclass(frozen=True)
class Dataset:
    """A cached benchmark database and what it holds."""

    path: Path
    size_mb: int
    rows: int
    bytes: int
    build_seconds: float | None  # None when it came from the cache

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "size_mb": self.size_mb,
            "rows": self.rows,
            "bytes": self.bytes,
            "cached": self.build_seconds is None,
            "build_seconds": self.build_seconds,
        }


def dataset_path(size_mb: int) -> Path:
    """Where the database of ``size_mb`` MiB is cached."""
    return DATA_DIR / f"bench-{size_mb}mb.sqlite3"


def ensure_dataset(size_mb: int, log=print) -> Dataset:
    """The cached database of ``size_mb`` MiB, built first when missing or stale."""
    path = dataset_path(size_mb)
    marker = path.with_suffix(".json")
    if path.is_file() and marker.is_file():
        meta = json.loads(marker.read_text())
        if meta.get("schema_version") == SCHEMA_VERSION:
            return Dataset(path, size_mb, meta["rows"], path.stat().st_size, None)
    log(f"building a {size_mb} MiB database at {path} (cached for later runs) ...")
    started = time.monotonic()
    rows = _build(path, size_mb * 1024 * 1024)
    seconds = round(time.monotonic() - started, 1)
    marker.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "size_mb": size_mb, "rows": rows}))
    log(f"built {rows} rows in {seconds} s")
    return Dataset(path, size_mb, rows, path.stat().st_size, seconds)


def _build(path: Path, target_bytes: int) -> int:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".building")
    for leftover in (temp, Path(f"{temp}-wal"), Path(f"{temp}-shm"), path.with_suffix(".json")):
        leftover.unlink(missing_ok=True)
    rng = random.Random(20260101)
    connection = sqlite3.connect(temp, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = OFF")  # a throw-away file until it is renamed
        connection.executescript(SCHEMA)
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        rows = 0
        # Bounded: a row adds at least ~100 bytes, so this many batches always reach the target.
        for _ in range(target_bytes // (100 * BATCH_ROWS) + 1):
            connection.execute("BEGIN")
            connection.executemany(
                "INSERT INTO items (kind, title, body, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                (_row(rng, rows + offset) for offset in range(BATCH_ROWS)),
            )
            connection.execute("COMMIT")
            rows += BATCH_ROWS
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if connection.execute("PRAGMA page_count").fetchone()[0] * page_size >= target_bytes:
                break
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.replace(temp, path)
    return rows


def _row(rng: random.Random, number: int) -> tuple:
    """One row: ~1 KB of words, and a blob of 0-7 KB (about one in five rows has none)."""
    body = " ".join(rng.choices(WORDS, k=rng.randint(20, 300)))
    payload = rng.randbytes(rng.randint(256, 7 * 1024)) if rng.random() > 0.2 else None
    created = f"2025-{1 + number % 12:02d}-{1 + number % 28:02d}T{number % 24:02d}:{number % 60:02d}:00Z"
    return (
        rng.choice(("note", "file", "event", "audit")),
        f"item {number} {rng.choice(WORDS)}",
        body,
        payload,
        created,
    )
