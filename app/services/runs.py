"""Run history: every run of a task writes its own JobRun row, so every process sees it."""

from __future__ import annotations

import os
from datetime import datetime

from sqlalchemy import case, func, select, update

from app.db import Database
from app.models import JobRun, utcnow

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


def start_run(db: Database, task: str, trigger: str, scheduled_for: datetime | None = None) -> JobRun:
    """Record that a run has started."""
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}")
    with db.writer() as session:
        run = JobRun(
            task=task,
            trigger=trigger,
            status="running",
            scheduled_for=scheduled_for,
            phase="starting",
            pid=os.getpid(),
        )
        session.add(run)
    return run


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
        run.status = status
        run.error = error
        run.finished_at = utcnow()
        run.phase = None
        for key in ("file", "size", "sha256", "detail"):
            if key in result:
                setattr(run, key, result[key])
    return run


def record_missed_run(db: Database, task: str, scheduled_for: datetime, reason: str) -> JobRun:
    """Record a fire time the scheduler skipped, so no run is missed silently."""
    now = utcnow()
    with db.writer() as session:
        run = JobRun(
            task=task,
            trigger="scheduled",
            status="missed",
            scheduled_for=scheduled_for,
            started_at=now,
            finished_at=now,
            error=reason,
        )
        session.add(run)
    return run


def mark_interrupted(db: Database, task: str, message: str) -> int:
    """Turn runs left "running" by a dead process into "interrupted".

    Call only while holding the task's lock: then no live run of the task exists anywhere.
    """
    with db.writer() as session:
        result = session.execute(
            update(JobRun)
            .where(JobRun.task == task, JobRun.status == "running")
            .values(
                status="interrupted",
                finished_at=utcnow(),
                phase=None,
                error=case(
                    (JobRun.trigger == "restore", INTERRUPTED_RESTORE),
                    else_=message,
                ),
            )
        )
        return result.rowcount


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


def is_alive(run: JobRun) -> bool:
    """Whether the process of a "running" run still exists (a crash leaves a stale row)."""
    if run.pid is None:
        return False
    try:
        os.kill(run.pid, 0)
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
