"""Run history: every run of a task writes its own JobRun row, so every process sees it."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.db import Database
from app.models import HAS_FIRE_TIME, JobRun, utcnow

TRIGGERS = ("scheduled", "manual", "catch-up", "restore")
FINISHED = ("success", "warning", "failed", "interrupted", "missed")
# A run "success with warnings" met its purpose (e.g. the local backup is made and verified;
# an off-site copy failed): it counts as a success for staleness and "last success".
SUCCEEDED = ("success", "warning")
# SQLite rolls an unfinished copy back when the database is next opened: never a mix.
INTERRUPTED_RESTORE = (
    "The process running this restore stopped before it finished. The live data is either the previous data "
    "or the restored backup, never a mix; a safety backup of the previous data was kept if one was made."
)


@cache
def this_host() -> str:
    """Where this process's pid means something: the host name and its pid namespace.

    Two containers may share a host name but not a pid namespace; the pid check of a run
    is made only by a process in the same one.
    """
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()[:8]  # noqa: SIM115 - tiny read
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()} pidns:{namespace}@{boot}"


def start_run(
    db: Database, task: str, trigger: str, scheduled_for: datetime | None = None, lease_seconds: float | None = None
) -> JobRun | None:
    """Record that a run has started; None when a run for this fire time exists already.

    The row is the claim: one row per task and fire time (the loser of two hosts inserting
    it gets None and must do nothing) and one running run per task (IntegrityError while
    another runs). ``lease_seconds`` gives the run a lease its owner must renew.
    """
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}")
    with db.writer() as session:
        lease_until = None if lease_seconds is None else database_now(db, session) + timedelta(seconds=lease_seconds)
        values = {
            "task": task,
            "trigger": trigger,
            "status": "running",
            "scheduled_for": scheduled_for,
            "started_at": utcnow(),
            "phase": "starting",
            "pid": os.getpid(),
            "host": this_host(),
            "lease_until": lease_until,
        }
        run_id = _insert_unless_fire_time_taken(db, session, values)
        return None if run_id is None else session.get(JobRun, run_id)


def _insert_unless_fire_time_taken(db: Database, session, values: dict) -> int | None:
    """INSERT ... ON CONFLICT (task, scheduled_for) DO NOTHING; the new id, or None when it conflicted."""
    dialect = sqlite if db.is_sqlite else postgresql
    statement = dialect.insert(JobRun).values(**values)
    if values.get("scheduled_for") is not None:
        statement = statement.on_conflict_do_nothing(
            index_elements=[JobRun.task, JobRun.scheduled_for], index_where=HAS_FIRE_TIME
        )
    return session.scalar(statement.returning(JobRun.id))


def database_now(db: Database, session) -> datetime:
    """The database's clock (PostgreSQL's, shared by every host; this host's on SQLite)."""
    if db.is_sqlite:
        return utcnow()
    return session.scalar(select(func.now()))


def clock(db: Database) -> datetime:
    """Now by the clock every host shares: the database's on PostgreSQL (hosts' clocks may
    drift), this host's on SQLite (one host)."""
    if db.is_sqlite:
        return utcnow()
    with db.session() as session:
        return database_now(db, session)


LEASE_GRACE_SECONDS = 5.0


def renew_lease(db: Database, run_id: int, lease_seconds: float) -> bool:
    """Push a running run's lease forward; False when the run is no longer running (closed by someone)."""
    with db.writer() as session:
        until = database_now(db, session) + timedelta(seconds=lease_seconds)
        result = session.execute(
            update(JobRun).where(JobRun.id == run_id, JobRun.status == "running").values(lease_until=until)
        )
        return result.rowcount == 1


def report_progress(db: Database, run_id: int, phase: str, percent: int | None) -> None:
    """Store the phase and percentage of a running run (shown by the status poll)."""
    with db.writer() as session:
        session.execute(
            update(JobRun).where(JobRun.id == run_id, JobRun.status == "running").values(phase=phase, progress=percent)
        )


def finish_run(db: Database, run_id: int, status: str, error: str | None = None, **result) -> JobRun:
    """Close a run as success or failed, with its error message or its result fields."""
    if status not in FINISHED:
        raise ValueError(f"status must be one of {FINISHED}")
    with db.writer() as session:
        run = session.get(JobRun, run_id)
        if run.status != "running":
            # Another process closed it (its lease had passed): that record stands; say how it ended.
            run.detail = f"{run.detail + ' ' if run.detail else ''}It went on after being closed and ended: {status}."
            return run
        run.status = status
        run.error = error
        run.finished_at = utcnow()
        run.phase = None
        for key in ("file", "size", "sha256", "detail"):
            if key in result:
                setattr(run, key, result[key])
    return run


def record_missed_run(db: Database, task: str, scheduled_for: datetime, reason: str) -> JobRun | None:
    """Record a fire time the scheduler skipped, so no run is missed silently.

    None when that fire time already has a row (another host ran or recorded it).
    """
    now = utcnow()
    values = {
        "task": task,
        "trigger": "scheduled",
        "status": "missed",
        "scheduled_for": scheduled_for,
        "started_at": now,
        "finished_at": now,
        "error": reason,
    }
    with db.writer() as session:
        run_id = _insert_unless_fire_time_taken(db, session, values)
        return None if run_id is None else session.get(JobRun, run_id)


# A backup run that dies after its local backup was made and recorded (in the off-site phase):
# the backup is there and verified, an off-site copy is not.
OFFSITE_INTERRUPTED = "The process stopped during the off-site upload; the local backup {file} is verified and kept."


def record_result_fields(db: Database, run_id: int, **fields) -> None:
    """Store result fields (``file``, ``size``, ``sha256``) while a run still goes on, so that
    a run killed in a later phase still names what it made."""
    with db.writer() as session:
        session.execute(update(JobRun).where(JobRun.id == run_id, JobRun.status == "running").values(**fields))


def _interrupted(run: JobRun, message: str) -> tuple[str, str]:
    """How a dead run is closed: (status, error)."""
    if run.trigger == "restore":
        return "interrupted", INTERRUPTED_RESTORE
    if run.file is not None:
        return "warning", OFFSITE_INTERRUPTED.format(file=run.file)
    return "interrupted", message


def mark_interrupted(db: Database, task: str, message: str) -> int:
    """Turn runs left "running" by a dead process into "interrupted".

    Call only while holding the task's lock: then no live run of the task exists anywhere.
    """
    with db.writer() as session:
        dead = list(session.scalars(select(JobRun).where(JobRun.task == task, JobRun.status == "running")))
        for run in dead:
            run.status, run.error = _interrupted(run, message)
            run.finished_at = utcnow()
            run.phase = None
        return len(dead)


def close_dead_runs(db: Database, task: str, message: str) -> list[JobRun]:
    """Close a task's running runs that nobody carries on any more; return them.

    A run is dead when its lease has passed (database time: the only clock every host
    shares) or, as a shortcut, when it ran in this pid namespace and its pid is gone.
    Safe without any lock: each row is closed only if it is still the same running run.
    """
    closed = []
    with db.writer() as session:
        now = database_now(db, session)
        for run in session.scalars(select(JobRun).where(JobRun.task == task, JobRun.status == "running")):
            # The run itself stops once its lease may have passed (runner.LeasedLock); others wait
            # a grace longer, so the two never overlap.
            expired = run.lease_until is not None and run.lease_until + timedelta(seconds=LEASE_GRACE_SECONDS) <= now
            gone_here = run.host == this_host() and not _pid_alive(run.pid)
            if not (expired or gone_here):
                continue
            run.status, run.error = _interrupted(run, message)
            run.finished_at = utcnow()
            run.phase = None
            closed.append(run)
    return closed


def recent_runs(db: Database, task: str | None, limit: int = 20) -> list[JobRun]:
    """The newest runs of a task (of every task for None), newest first."""
    with db.session() as session:
        query = select(JobRun).order_by(JobRun.id.desc()).limit(limit)
        if task is not None:
            query = query.where(JobRun.task == task)
        return list(session.scalars(query))


def latest_run(db: Database, task: str, status: str | None = None, backups_only: bool = False) -> JobRun | None:
    """The newest run of a task, optionally only one with the given status (``success`` includes
    ``warning``), or leaving out restores."""
    with db.session() as session:
        query = select(JobRun).where(JobRun.task == task)
        if status == "success":
            query = query.where(JobRun.status.in_(SUCCEEDED))
        elif status:
            query = query.where(JobRun.status == status)
        if backups_only:
            query = query.where(JobRun.trigger != "restore")
        return session.scalars(query.order_by(JobRun.id.desc()).limit(1)).first()


def is_alive(run: JobRun, now: datetime | None = None) -> bool:
    """Whether a "running" run is still carried on (a crash leaves a stale row).

    A run with a lease (several hosts) lives while its lease does, unless it ran in this
    pid namespace and its process is gone; a run without one lives while its process does.
    """
    if run.lease_until is not None:
        if run.host == this_host() and not _pid_alive(run.pid):
            return False
        return run.lease_until > (now or utcnow())  # ``now``: the database's clock (runs.clock)
    return _pid_alive(run.pid)


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def get_run(db: Database, run_id: int) -> JobRun | None:
    """One run by id."""
    with db.session() as session:
        return session.get(JobRun, run_id)


def newest_run_id(db: Database) -> int:
    """The id of the newest run of any task (0 when none ran yet)."""
    with db.session() as session:
        return session.scalar(select(func.max(JobRun.id))) or 0
