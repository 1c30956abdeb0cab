"""How one run of a task is claimed, carried out and recorded, whichever surface started it.

The API, the pages, the CLI and the scheduler all go through :func:`claim_task` (the
task's lock and a "running" row) and :func:`complete_task` (the body, then the outcome,
recorded by the run itself so every process sees it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import OperationalError

from app.db import Database
from app.models import JobRun
from app.services import notifications, runs
from app.services.errors import TaskError
from app.services.locks import FileLock
from app.services.registry import TASKS, Task, TaskContext

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 0.5
# How long a finished run keeps trying to record its outcome while another process holds
# the database's write lock (each try waits the busy timeout, app/db.py).
FINISH_RETRY_SECONDS = 60
# How long a refused claim looks for the running run's row before answering without it.
BUSY_LOOKUP_SECONDS = 2.0


class TaskBusy(Exception):
    """The task is already running somewhere; ``running`` is that run, when known."""

    def __init__(self, task: Task, running: JobRun | None) -> None:
        restoring = running is not None and running.trigger == "restore"
        super().__init__("A restore is already running." if restoring else task.busy_message)
        self.running = running


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
        raise TaskBusy(task, _running_run(db, task_id))
    try:
        close_interrupted_runs(config, db, task)
        run = runs.start_run(db, task_id, trigger, scheduled_for)
    except BaseException:
        lock.release()
        raise
    notifications.run_started(config, db, run)
    return run, lock


def _running_run(db: Database, task_id: str) -> JobRun | None:
    """The run holding the lock, for a refusal to name.

    Another process takes the lock, then records its run (and records the end, then
    releases it): in between there is no running row. Look again for a moment; if the
    run ended meanwhile, name it (the newest run), so a 409 names a run whenever one exists.
    """
    deadline = time.monotonic() + BUSY_LOOKUP_SECONDS
    while True:
        running = runs.latest_run(db, task_id, status="running")
        if running is not None or time.monotonic() >= deadline:
            return running or runs.latest_run(db, task_id)
        time.sleep(0.02)


def close_interrupted_runs(config: Mapping, db: Database, task: Task) -> int:
    """Mark runs left "running" by dead processes as interrupted and clean up after them.

    Call only while holding the task's lock: then no live run of the task exists anywhere.
    """
    count = runs.mark_interrupted(db, task.id, task.interrupted_message)
    if count:
        log.warning("marked %d %s run(s) as interrupted", count, task.id)
        task.recover(config)
    return count


@dataclass(frozen=True)
class RunOutcome:
    """A finished run, with the body's result on success or the error on failure."""

    run: JobRun
    result: dict | None = None
    error: TaskError | None = None


def complete_task(
    config: Mapping, db: Database, run: JobRun, lock: FileLock, body: Callable[[TaskContext], dict] | None = None
) -> RunOutcome:
    """Carry out a claimed run (the task's body, or ``body``), record its outcome, release the lock.

    Never raises for a task failure: the failure is recorded in the run and returned.
    """
    task = TASKS[run.task]
    try:
        context = TaskContext(config, db, run.trigger, _progress_writer(db, run.id), run.id)
        try:
            result = (body or task.body)(context)
        except TaskError as exc:
            log.warning("%s run %d failed: %s", task.id, run.id, exc)
            return RunOutcome(_finish(db, run.id, "failed", error=str(exc)), error=exc)
        except Exception as exc:
            log.exception("%s run %d crashed", task.id, run.id)
            error = TaskError(f"Unexpected error: {exc}")
            return RunOutcome(_finish(db, run.id, "failed", error=str(error)), error=error)
        warnings = result.get("warnings")
        if warnings:
            return RunOutcome(_finish(db, run.id, "warning", error="; ".join(warnings), **result), result=result)
        return RunOutcome(_finish(db, run.id, "success", **result), result=result)
    finally:
        lock.release()
        notifications.run_finished(config, db, run.id)


def _finish(db: Database, run_id: int, status: str, **fields) -> JobRun:
    """Record a run's outcome, retrying while another process holds the database's write lock.

    Giving up leaves the run "running" under a live pid: shown as running, and never closed
    by the leader, until the task's next run.
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
    finish_in_background(config, db, run, lock)
    return run


def finish_in_background(config: Mapping, db: Database, run: JobRun, lock: FileLock, body=None) -> None:
    """Carry out a claimed run in a thread of its own."""
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
