"""The state database's engine and sessions, on SQLite (one host) or PostgreSQL (several hosts).

SQLite: WAL mode, a busy timeout, ``BEGIN IMMEDIATE`` for writers. PostgreSQL: one writer
at a time too (a transaction-level advisory lock), so every read-modify-write keeps the
meaning it has on SQLite; it works through PgBouncer in transaction mode. Tables are made
on first start the same way on both engines (:meth:`Database.create_tables`).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
# PostgreSQL advisory lock keys (any 64-bit numbers no other code of this database uses).
WRITER_LOCK_KEY = 0x6B75_7073_0001
INIT_LOCK_KEY = 0x6B75_7073_0002
# A process paused inside a write transaction (SIGSTOP, a VM stall) must not hold the
# writer lock for ever: the server ends such a transaction after this long.
IDLE_IN_TRANSACTION_TIMEOUT = "5s"  # every transaction here lasts milliseconds


class Database:
    """One engine and session factory per app; services receive it explicitly.

    ``path`` is the SQLite file (None on PostgreSQL, where nothing lives beside a file).
    """

    def __init__(self, url: str, path: Path | None = None) -> None:
        self.url = url
        self.path = path
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, path)
            self._writer_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            self.engine = _postgres_engine(url)
            self._writer_engine = self.engine
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer_sessions = sessionmaker(self._writer_engine, expire_on_commit=False)

    @property
    def shared(self) -> bool:
        """True when several hosts may share this database (no file lock or pid reaches them all)."""
        return not self.is_sqlite

    @property
    def identity(self) -> str:
        """A name for this database in logs and per-database caches."""
        return str(self.path) if self.is_sqlite else self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read-mostly session, committed on success and rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def writer(self) -> Iterator[Session]:
        """A session that holds the database's one write lock from its start.

        SQLite: ``BEGIN IMMEDIATE`` (a deferred transaction that reads and then writes
        cannot wait for the lock in WAL mode). PostgreSQL: a transaction-level advisory
        lock, waited for up to the same busy timeout (then OperationalError, as on SQLite).
        """
        with self._writer_sessions() as session, session.begin():
            connection = session.connection()  # on SQLite, emit BEGIN IMMEDIATE now
            if not self.is_sqlite:
                _take_postgres_writer_lock(connection)
            yield session

    @contextmanager
    def init_lock(self) -> Iterator[None]:
        """Serialise schema creation, so several workers (and hosts) can start at once."""
        if not self.is_sqlite:
            with self.engine.connect() as connection, connection.begin():
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": INIT_LOCK_KEY})
                yield
            return
        lock_path = self.path.with_name(self.path.name + ".init.lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def create_tables(self) -> None:
        """Create missing tables, columns and indexes (no manual step on first start, either engine)."""
        from app.models import Base

        with self.init_lock():
            Base.metadata.create_all(self.engine)
            _add_missing_columns(self.engine, Base.metadata)
            _add_missing_indexes(self.engine, Base.metadata)

    def dispose(self) -> None:
        """Close pooled connections (tests, shutdown)."""
        self.engine.dispose()


def _sqlite_engine(url: str, path: Path) -> Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Owner-only, like the backups: it holds the same data. SQLite gives the -wal and
        # -shm files the database file's mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _configure_connection)
    event.listen(engine, "begin", _begin_transaction)
    return engine


def _postgres_engine(url: str) -> Engine:
    # TCP keepalives: a connection to a host that vanished is noticed within ~25 s, not hours.
    # pool_pre_ping: a connection the server ended (restart, failover, pg_terminate_backend)
    # is replaced at checkout instead of failing the next statement.
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        connect_args={
            # No server-side prepared statements: in PgBouncer's transaction mode the next
            # transaction may run on another server connection, where they do not exist.
            "prepare_threshold": None,
            "connect_timeout": 10,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        },
    )
    event.listen(engine, "do_connect", _name_connection)
    return engine


def _name_connection(_dialect, _record, _cargs, cparams) -> None:
    # pg_stat_activity then says which host and process holds each connection.
    import socket

    cparams["application_name"] = f"backups {socket.gethostname()} pid {os.getpid()}"[:63]


def _take_postgres_writer_lock(connection) -> None:
    # SET LOCAL (set_config(..., true)) rather than startup options: PgBouncer passes no
    # options, and a session-level SET would leak to other clients in transaction mode.
    connection.execute(
        text(
            "SELECT set_config('lock_timeout', :lock, true), "
            "set_config('idle_in_transaction_session_timeout', :idle, true)"
        ),
        {"lock": f"{BUSY_TIMEOUT_MS}ms", "idle": IDLE_IN_TRANSACTION_TIMEOUT},
    )
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITER_LOCK_KEY})


def _add_missing_columns(engine: Engine, metadata) -> None:
    """Add columns a newer version declares to tables an older version created (all nullable)."""
    inspector = inspect(engine)
    with engine.begin() as connection:
        for table in metadata.sorted_tables:
            existing = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in existing:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                connection.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))
                log.info("added column %s.%s", table.name, column.name)


def _add_missing_indexes(engine: Engine, metadata) -> None:
    """Create declared indexes missing from older tables.

    A unique index that old rows contradict (possible only in a SQLite state database
    from before the index existed) is left out with a warning: on one host the file
    locks still keep runs single.
    """
    for table in metadata.sorted_tables:
        for index in table.indexes:
            try:
                index.create(engine, checkfirst=True)
            except (IntegrityError, OperationalError) as exc:
                if index.name == "uq_job_run_fire_time" and _keep_first_run_per_fire_time(engine):
                    index.create(engine, checkfirst=True)
                    continue
                log.warning("index %s not created: %s", index.name, exc.orig)


def _keep_first_run_per_fire_time(engine: Engine) -> bool:
    """Stage 1 could record two rows for one fire time (a claim that failed, then a "missed"
    row). Keep the fire time on the first and clear it on the others (they stay in the
    history), so the index that makes scheduled runs exactly-once can exist."""
    with engine.begin() as connection:
        cleared = connection.execute(
            text(
                "UPDATE job_run SET scheduled_for = NULL WHERE scheduled_for IS NOT NULL AND id NOT IN "
                "(SELECT MIN(id) FROM job_run WHERE scheduled_for IS NOT NULL GROUP BY task, scheduled_for)"
            )
        ).rowcount
    log.warning("job_run: %d older row(s) shared a fire time with another; their fire time was cleared", cleared)
    return cleared > 0


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
