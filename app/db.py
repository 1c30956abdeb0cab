"""The SQLite engine and sessions: WAL mode, a busy timeout, tables made on first start."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

BUSY_TIMEOUT_MS = 10_000


class Database:
    """One engine and session factory per app; services receive it explicitly."""

    def __init__(self, url: str, path: Path) -> None:
        self.url = url
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Owner-only, like the backups: it holds the same data. SQLite gives the -wal and
            # -shm files the database file's mode.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.engine: Engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(self.engine, "connect", _configure_connection)
        event.listen(self.engine, "begin", _begin_transaction)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._writer_sessions = sessionmaker(self._writer_engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read-mostly session, committed on success and rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def writer(self) -> Iterator[Session]:
        """A session that takes SQLite's write lock up front (``BEGIN IMMEDIATE``).

        A deferred transaction that reads and then writes cannot wait for the lock in WAL
        mode (SQLITE_BUSY_SNAPSHOT fails at once), so every read-modify-write uses this.
        """
        with self._writer_sessions() as session, session.begin():
            session.connection()  # emit BEGIN IMMEDIATE now, not at the first statement
            yield session

    @contextmanager
    def init_lock(self) -> Iterator[None]:
        """Serialise schema creation, so several workers can start at once."""
        lock_path = self.path.with_name(self.path.name + ".init.lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def create_tables(self) -> None:
        """Create missing tables (no manual step on first start)."""
        from app.models import Base

        with self.init_lock():
            Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        """Close pooled connections (tests, shutdown)."""
        self.engine.dispose()


def _configure_connection(dbapi_connection, _record) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself, so it can choose IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _begin_transaction(connection) -> None:
    mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")
