"""Move the scheduler's tables out of the data database into the state database, once.

Stage 1 kept schedules, history, the leader heartbeat and APScheduler's job store in the
database it backs up. A restore would then rewind them, and APScheduler unpickles its
job rows, so a restored or uploaded file could run code. At the first start on a new
state database, under its init lock, the rows are copied (committed together with a
marker), then the tables are dropped from the data database. A crash between the two
steps only repeats the drop; later starts never look again. Job rows are copied only when a restricted unpickler
proves they hold nothing but a trigger and one of our own entry points.
"""

from __future__ import annotations

import io
import logging
import pickle
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

from sqlalchemy import select, text

from app.db import Database
from app.models import StateMeta

log = logging.getLogger(__name__)

JOBS_TABLE = "apscheduler_jobs"
# Parents before children does not matter (no foreign keys); job rows last, they are checked.
LEGACY_TABLES = ("schedule_config", "job_run", "scheduler_state", JOBS_TABLE)
# The columns stage 1 created (a subset is enough: later versions may add columns).
STAGE_ONE_COLUMNS = {
    "schedule_config": {"task", "mode", "time", "weekdays", "cron", "every_hours", "version", "applied_version"},
    "job_run": {"id", "task", "trigger", "status", "scheduled_for", "started_at", "finished_at", "pid", "phase"},
    "scheduler_state": {"id", "leader_pid", "leader_host", "started_at", "heartbeat_at"},
    JOBS_TABLE: {"id", "next_run_time", "job_state"},
}
MOVED_MARKER = "state_moved_from_data_database"
DONE = "done"
DROP_PREFIX = "drop:"
TRIGGER_MODULES = ("apscheduler.triggers.",)
OUR_TRIGGER_MODULES = ("app.services.schedules", "app.services.crontab")
PLAIN_GLOBALS = {
    ("datetime", "datetime"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("zoneinfo", "ZoneInfo"),
}


def move_state_tables(data_path: Path, state: Database, job_refs: Mapping[str, set[str]]) -> dict[str, int]:
    """At the first start on this state database, move legacy tables out of ``data_path``.

    Returns the rows copied per table. ``job_refs`` maps task ids to their entry points; a
    stored job naming anything else is dropped. Only the first start looks: a stage-1
    backup restored later keeps its old tables as data, and nothing is read from them.
    """
    if _marker(state) == DONE:
        return {}
    if not state.is_sqlite:
        # Stage 1 only ever ran on SQLite with one file: a PostgreSQL state database is new,
        # and its data database is not ours to change (moving state between engines is manual).
        with state.init_lock(), state.writer() as session:
            if session.get(StateMeta, MOVED_MARKER) is None:
                session.add(StateMeta(key=MOVED_MARKER, value=DONE))
        return {}
    copied: dict[str, int] = {}
    with state.init_lock():
        marker = _marker(state)
        if marker is None:
            legacy = _legacy_tables(data_path) if data_path.is_file() else []
            with state.writer() as session:
                if legacy:
                    copied = _copy_rows(session, data_path, legacy, job_refs)
                    if "job_run" in copied:
                        session.execute(CATALOGUE_FROM_HISTORY)
                # Committed with the rows: a crash before the drop only repeats the drop.
                marker = f"{DROP_PREFIX}{','.join(legacy)}" if legacy else DONE
                session.add(StateMeta(key=MOVED_MARKER, value=marker))
        if marker.startswith(DROP_PREFIX):
            _drop_tables(data_path, [name for name in marker.removeprefix(DROP_PREFIX).split(",") if name])
            with state.writer() as session:
                session.get(StateMeta, MOVED_MARKER).value = DONE
    if copied:
        log.info("moved the scheduler's tables out of %s: %s", data_path, copied)
    return copied


def _marker(state: Database) -> str | None:
    with state.session() as session:
        return session.scalar(select(StateMeta.value).where(StateMeta.key == MOVED_MARKER))


def _legacy_tables(data_path: Path) -> list[str]:
    """Our stage-1 tables in the data file; [] unless the layout is ours beyond doubt.

    The data may belong to another application with a table of the same name (any app
    using APScheduler's job store has an ``apscheduler_jobs``): a table counts only with
    the columns stage 1 gave it, and only when ``schedule_config`` and ``job_run`` (which
    stage 1 always created together) are both there.
    """
    with closing(sqlite3.connect(f"file:{data_path}?mode=ro", uri=True)) as conn:
        try:
            found = {name: {row[1] for row in conn.execute(f'PRAGMA table_info("{name}")')} for name in LEGACY_TABLES}
        except sqlite3.DatabaseError:
            return []  # not a database: the backup will say so, this is not ours to touch
    ours = [name for name in LEGACY_TABLES if found[name] and STAGE_ONE_COLUMNS[name] <= found[name]]
    return ours if {"schedule_config", "job_run"} <= set(ours) else []


def _copy_rows(session, data_path: Path, tables: list[str], job_refs: Mapping[str, set[str]]) -> dict[str, int]:
    copied = {}
    state_conn = session.connection()
    with closing(sqlite3.connect(f"file:{data_path}?mode=ro", uri=True)) as legacy:
        for table in tables:
            legacy_columns = [row[1] for row in legacy.execute(f'PRAGMA table_info("{table}")')]
            state_columns = {row[1] for row in state_conn.exec_driver_sql(f'PRAGMA table_info("{table}")')}
            columns = [name for name in legacy_columns if name in state_columns]
            if not columns:
                continue
            quoted = ", ".join(f'"{name}"' for name in columns)
            rows = legacy.execute(f'SELECT {quoted} FROM "{table}"').fetchall()
            if table == JOBS_TABLE:
                rows = [row for row in rows if _trusted_job(dict(zip(columns, row, strict=True)), job_refs)]
            params = ", ".join(f":{index}" for index in range(len(columns)))
            statement = text(f'INSERT OR REPLACE INTO "{table}" ({quoted}) VALUES ({params})')
            for row in rows:
                state_conn.execute(statement, {str(index): value for index, value in enumerate(row)})
            copied[table] = len(rows)
    return copied


def _drop_tables(data_path: Path, tables: list[str]) -> None:
    if not tables or not data_path.is_file():
        return
    with closing(sqlite3.connect(data_path, timeout=30, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        for table in tables:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        conn.execute("COMMIT")


# Stage 1 recorded each backup's sha256 only in its run: it becomes the catalogue entry.
CATALOGUE_FROM_HISTORY = text(
    "INSERT OR IGNORE INTO backup_record (name, kind, size, sha256, created_at, verified_at) "
    "SELECT file, CASE WHEN trigger = 'manual' THEN 'manual' ELSE 'auto' END, size, sha256, finished_at, finished_at "
    "FROM job_run WHERE status = 'success' AND file IS NOT NULL AND sha256 IS NOT NULL AND size IS NOT NULL"
)


class _TriggerOnlyUnpickler(pickle.Unpickler):
    """Loads a job's state only if it names trigger classes, dates and zones, nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("builtins", "getattr"):
            return _zoneinfo_getattr
        if (module, name) in PLAIN_GLOBALS:
            return super().find_class(module, name)
        if (module.startswith(TRIGGER_MODULES) or module in OUR_TRIGGER_MODULES) and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type) and (
                found.__module__.startswith(TRIGGER_MODULES) or found.__module__ in OUR_TRIGGER_MODULES
            ):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a stored job")


def _zoneinfo_getattr(owner, name: str):
    # ZoneInfo pickles as getattr(ZoneInfo, "_unpickle"); a free getattr would reach any object.
    from zoneinfo import ZoneInfo

    if owner is ZoneInfo and name == "_unpickle":
        return ZoneInfo._unpickle
    raise pickle.UnpicklingError(f"getattr({owner!r}, {name!r}) is not allowed in a stored job")


def _trusted_job(row: Mapping, job_refs: Mapping[str, set[str]]) -> bool:
    """Whether a stored job row is one of ours: an allowed pickle naming a task's own entry point."""
    from apscheduler.triggers.base import BaseTrigger

    try:
        state = _TriggerOnlyUnpickler(io.BytesIO(row["job_state"])).load()
    except Exception as exc:
        log.warning("dropped stored job %r while moving it: %s", row.get("id"), exc)
        return False
    trusted = (
        isinstance(state, dict)
        and state.get("id") == row.get("id")
        and state.get("func") in job_refs.get(row.get("id"), ())
        and list(state.get("args") or []) in ([], [row.get("id")])
        and isinstance(state.get("trigger"), BaseTrigger)
    )
    if not trusted:
        log.warning("dropped stored job %r while moving it: not one of this app's tasks", row.get("id"))
    return trusted
