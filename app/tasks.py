"""The task registry, and how one run of a task is carried out and recorded.

Adding a scheduled task is one body function and one ``TASKS`` entry (see README.md).
The job store keeps each task's entry point by its textual reference, e.g.
``"app.tasks:scheduled_backup_job"``: a job whose function cannot be imported is
silently dropped by APScheduler, so never rename an entry point without a migration.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import OperationalError

from app.db import Database
from app.models import JobRun
from app.services import catalogue, notifications, runs
from app.services.backups import (
    BackupError,
    backup_lock,
    perform_sqlite_backup,
    remove_stale_temp_files,
    resolve_backup,
)
from app.services.locks import FileLock
from app.services.restore import remove_restore_leftovers, restore_backup

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 0.5
# How long a finished run keeps trying to record its outcome while another process holds
# the database's write lock (each try waits the busy timeout, app/db.py).
FINISH_RETRY_SECONDS = 60


class TaskBusy(Exception):
    """The task is already running somewhere; ``running`` is that run, when known."""

    def __init__(self, running: JobRun | None) -> None:
        what = "restore" if running is not None and running.trigger == "restore" else "backup"
        super().__init__(f"A {what} is already running.")
        self.running = running


@dataclass(frozen=True)
class TaskContext:
    """What a task body gets: configuration, database, why it runs, and a progress callback."""

    config: Mapping
    db: Database
    trigger: str
    report: Callable[[str, int | None], None]


@dataclass(frozen=True)
class Task:
    """A schedulable task: its id, title, job-store entry point, lock, body and clean-up.

    ``recover`` removes what a killed run left behind; it runs under the task's lock.
    """

    id: str
    title: str
    job_ref: str
    lock: Callable[[Mapping], FileLock]
    body: Callable[[TaskContext], dict]
    recover: Callable[[Mapping], object] = lambda config: None


def _backup_db(ctx: TaskContext) -> dict:
    result = perform_sqlite_backup(
        Path(ctx.config["DATABASE_PATH"]),
        Path(ctx.config["BACKUPS_DIR"]),
        kind="manual" if ctx.trigger == "manual" else "auto",
        keep_last=ctx.config["BACKUP_KEEP_LAST"],
        busy_timeout=ctx.config["BACKUP_BUSY_TIMEOUT_SECONDS"],
        progress=ctx.report,
    )
    catalogue.record_backup(ctx.db, result.name, result.kind, result.size, result.sha256, result.created_at)
    return {"file": result.name, "size": result.size, "sha256": result.sha256, "backup": result}


def _restore_body(name: str) -> Callable[[TaskContext], dict]:
    """The body of a restore run of ``name`` (a run of ``backup_db`` with trigger "restore")."""

    def restore(ctx: TaskContext) -> dict:
        result = restore_backup(
            Path(ctx.config["DATABASE_PATH"]),
            Path(ctx.config["BACKUPS_DIR"]),
            ctx.db,
            name,
            busy_timeout=ctx.config["RESTORE_BUSY_TIMEOUT_SECONDS"],
            report=ctx.report,
        )
        detail = f"Safety backup of the previous data: {result.safety.name}"
        return {"file": result.name, "size": result.size, "sha256": result.sha256, "detail": detail, "restore": result}

    return restore


def _backup_recover(config: Mapping) -> list[str]:
    backups_dir = Path(config["BACKUPS_DIR"])
    return remove_stale_temp_files(backups_dir) + remove_restore_leftovers(backups_dir)


def _backup_lock(config: Mapping) -> FileLock:
    return backup_lock(Path(config["DATABASE_PATH"]))


TASKS: dict[str, Task] = {
    "backup_db": Task(
        id="backup_db",
        title="Database backup",
        job_ref="app.tasks:scheduled_backup_job",
        lock=_backup_lock,
        body=_backup_db,
        recover=_backup_recover,
    ),
}


def scheduled_backup_job() -> None:
    """APScheduler's entry point for ``backup_db`` (stored by name: never rename)."""
    from app.services.scheduler import run_scheduled_task

    run_scheduled_task("backup_db")


def claim_task(
    config: Mapping, db: Database, task_id: str, trigger: str, scheduled_for: datetime | None = None, wait: float = 0
) -> tuple[JobRun, FileLock]:
    """Take the task's lock (waiting up to ``wait`` s) and record a new running run.

    Raises :class:`TaskBusy` when another run holds the lock. Runs left "running" by a
    dead process are marked interrupted first: holding the lock proves none is alive.
    """
    task = TASKS[task_id]
    lock = task.lock(config)
    if not (lock.acquire(wait) if wait else lock.try_acquire()):
        raise TaskBusy(runs.latest_run(db, task_id, status="running"))
    try:
        close_interrupted_runs(config, db, task)
        run = runs.start_run(db, task_id, trigger, scheduled_for)
    except BaseException:
        lock.release()
        raise
    notifications.run_started(config, db, run)
    return run, lock


def close_interrupted_runs(config: Mapping, db: Database, task: Task) -> int:
    """Mark runs left "running" by dead processes as interrupted and clean up after them.

    Call only while holding the task's lock: then no live run of the task exists anywhere.
    """
    count = runs.mark_interrupted(db, task.id)
    if count:
        log.warning("marked %d %s run(s) as interrupted", count, task.id)
        task.recover(config)
    return count


@dataclass(frozen=True)
class RunOutcome:
    """A finished run, with the body's result on success or the error on failure."""

    run: JobRun
    result: dict | None = None
    error: BackupError | None = None


def complete_task(
    config: Mapping, db: Database, run: JobRun, lock: FileLock, body: Callable[[TaskContext], dict] | None = None
) -> RunOutcome:
    """Carry out a claimed run (the task's body, or ``body``), record its outcome, release the lock.

    Never raises for a task failure: the failure is recorded in the run and returned.
    """
    task = TASKS[run.task]
    try:
        context = TaskContext(config, db, run.trigger, _progress_writer(db, run.id))
        try:
            result = (body or task.body)(context)
        except BackupError as exc:
            log.warning("%s run %d failed: %s", task.id, run.id, exc)
            return RunOutcome(_finish(db, run.id, "failed", error=str(exc)), error=exc)
        except Exception as exc:
            log.exception("%s run %d crashed", task.id, run.id)
            error = BackupError(f"Unexpected error: {exc}")
            return RunOutcome(_finish(db, run.id, "failed", error=str(error)), error=error)
        return RunOutcome(_finish(db, run.id, "success", **result), result=result)
    finally:
        lock.release()
        notifications.run_finished(config, db, run.id)


def _finish(db: Database, run_id: int, status: str, **fields) -> JobRun:
    """Record a run's outcome, retrying while another process holds the database's write lock.

    Giving up leaves the run "running" under a live pid: shown as running, and never closed
    by the leader, until the next backup.
    """
    deadline = time.monotonic() + FINISH_RETRY_SECONDS
    while True:
        try:
            return runs.finish_run(db, run_id, status, **fields)
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("run %d: outcome not recorded yet (%s); retrying", run_id, exc.orig)
            time.sleep(0.5)


def run_task_now(config: Mapping, db: Database, task_id: str) -> RunOutcome:
    """A manual run, carried out in this thread; raises :class:`TaskBusy` if one is running."""
    run, lock = claim_task(config, db, task_id, "manual")
    return complete_task(config, db, run, lock)


def start_task_in_background(config: Mapping, db: Database, task_id: str) -> JobRun:
    """A manual run claimed here (so a busy task is refused at once) and finished in a thread."""
    run, lock = claim_task(config, db, task_id, "manual")
    _finish_in_background(config, db, run, lock)
    return run


def restore_now(config: Mapping, db: Database, name: str) -> RunOutcome:
    """Restore the backup ``name`` in this thread (the CLI); raises :class:`TaskBusy` while one runs."""
    resolve_backup(Path(config["BACKUPS_DIR"]), name)
    run, lock = claim_task(config, db, "backup_db", "restore")
    return complete_task(config, db, run, lock, body=_restore_body(name))


def start_restore_in_background(config: Mapping, db: Database, name: str) -> JobRun:
    """Claim a restore of ``name`` (refused at once while a backup or restore runs), finish it in a thread."""
    resolve_backup(Path(config["BACKUPS_DIR"]), name)
    run, lock = claim_task(config, db, "backup_db", "restore")
    _finish_in_background(config, db, run, lock, _restore_body(name))
    return run


def _finish_in_background(config: Mapping, db: Database, run: JobRun, lock: FileLock, body=None) -> None:
    worker = threading.Thread(
        target=complete_task, args=(config, db, run, lock, body), name=f"run-{run.id}", daemon=True
    )
    worker.start()


def _progress_writer(db: Database, run_id: int) -> Callable[[str, int | None], None]:
    """A progress callback that writes at most twice a second, and on every phase change."""
    last = {"phase": None, "at": 0.0}

    def report(phase: str, percent: int | None) -> None:
        now = time.monotonic()
        if phase == last["phase"] and now - last["at"] < PROGRESS_INTERVAL_SECONDS:
            return
        last.update(phase=phase, at=now)
        try:
            runs.report_progress(db, run_id, phase, percent)
        except OperationalError as exc:
            # Progress is only shown: another process holding the write lock past the busy
            # timeout (the backup itself only reads) must not fail the backup.
            log.warning("run %d: progress not recorded (%s)", run_id, exc.orig)

    return report
