"""How one run of a task is claimed, carried out and recorded, whichever surface started it.

The API, the pages, the CLI and the scheduler all go through :func:`claim_task` (the
task's lock and a "running" row) and :func:`complete_task` (the body, then the outcome,
recorded by the run itself so every process sees it).

On one host the task's file lock makes runs single-flight. When several hosts share a
PostgreSQL state database, the row is the claim: its insert fails while another run of
the task is running (a unique index), a scheduled run's insert does nothing when its fire
time has a row already (the loser does nothing), and the run renews a lease while it
lives, so a run whose host died is closed by whoever notices the lease has passed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError, OperationalError

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


# Defaults; SCHEDULER_LEASE_SECONDS overrides the lease (tests shorten it).
LEASE_SECONDS = 10.0
CLAIM_RETRY_SECONDS = 0.25  # how often a waiting claim retries the insert on a shared database


class FireTimeTaken(Exception):
    """Another process (another host) already claimed this fire time: do nothing."""


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

    Raises :class:`TaskBusy` when another run holds the lock, :class:`FireTimeTaken` when
    ``scheduled_for`` already has a run. Runs left "running" by a dead process are marked
    interrupted first: holding the lock proves none is alive (on a shared database, their
    leases say so). The lock returned is released by :func:`complete_task`.
    """
    task = TASKS[task_id]
    deadline = time.monotonic() + wait
    lock = task.lock(config)
    if not (lock.acquire(wait) if wait else lock.try_acquire()):
        raise TaskBusy(task, _running_run(db, task_id))
    try:
        if db.shared:
            run = _claim_shared(config, db, task, trigger, scheduled_for, deadline)
            lock = LeasedLock(lock, db, run.id, lease_seconds(config))
        else:
            close_interrupted_runs(config, db, task)
            run = runs.start_run(db, task_id, trigger, scheduled_for)
            if run is None:
                raise FireTimeTaken(f"{task_id} at {scheduled_for} has a run already")
    except BaseException:
        lock.release()
        raise
    notifications.run_started(config, db, run)
    return run, lock


def lease_seconds(config: Mapping) -> float:
    """How long a run's (and the leader's) lease lasts without renewal."""
    return float(config.get("SCHEDULER_LEASE_SECONDS", LEASE_SECONDS))


def _claim_shared(
    config: Mapping, db: Database, task: Task, trigger: str, scheduled_for: datetime | None, deadline: float
) -> JobRun:
    """Insert the running row on a shared database, retrying until ``deadline`` while another run lives."""
    while True:
        closed = runs.close_dead_runs(db, task.id, task.interrupted_message)
        if closed:
            log.warning("closed %d %s run(s) whose lease had passed or whose process is gone", len(closed), task.id)
        try:
            run = runs.start_run(db, task.id, trigger, scheduled_for, lease_seconds=lease_seconds(config))
        except IntegrityError:  # another run of the task is running (on any host)
            if time.monotonic() >= deadline:
                raise TaskBusy(task, _running_run(db, task.id)) from None
            time.sleep(CLAIM_RETRY_SECONDS)
            continue
        if run is None:
            raise FireTimeTaken(f"{task.id} at {scheduled_for} has a run already")
        # No other run of the task is alive anywhere now: clean up after the dead ones.
        task.recover(config)
        return run


class LeasedLock:
    """The task's file lock plus the run's lease, renewed in a thread until :meth:`release`."""

    def __init__(self, lock: FileLock, db: Database, run_id: int, seconds: float) -> None:
        self._lock = lock
        self._stop = threading.Event()
        # Set when this run may no longer count on its lease: the run stops at its next
        # progress report, before another host can close it (they wait the lease plus
        # ``runs.LEASE_GRACE_SECONDS``), so no two hosts carry the task at once.
        self.lost = threading.Event()
        self._seconds = seconds
        self._renewed = time.monotonic()
        self._thread = threading.Thread(
            target=self._renew, args=(db, run_id, seconds), name=f"lease-{run_id}", daemon=True
        )
        self._thread.start()

    @property
    def held(self) -> bool:
        return self._lock.held

    def lapsed(self) -> bool:
        """Whether the lease is lost, or may have passed by this process's own clock."""
        if not self.lost.is_set() and time.monotonic() - self._renewed >= self._seconds:
            self.lost.set()
        return self.lost.is_set()

    def _renew(self, db: Database, run_id: int, seconds: float) -> None:
        while not self._stop.wait(seconds / 3):
            started = time.monotonic()
            try:
                if not runs.renew_lease(db, run_id, seconds) and not self._stop.is_set():
                    log.error("run %d was closed by another process (its lease had passed)", run_id)
                    self.lost.set()
                    return
                self._renewed = started  # the lease runs from before the renewal was asked
            except Exception as exc:  # the database is unreachable: keep trying while the lease lasts
                log.warning("run %d: lease not renewed (%s)", run_id, exc)

    def release(self) -> None:
        self._stop.set()
        self._lock.release()


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

    Call only while holding the task's lock: then no live run of the task exists anywhere
    (one host; on a shared database :func:`app.services.runs.close_dead_runs` decides by lease).
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
        lapsed = lock.lapsed if isinstance(lock, LeasedLock) else None
        context = TaskContext(config, db, run.trigger, _progress_writer(db, run.id, lapsed), run.id)
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


LEASE_LOST = (
    "This run stopped: it could not renew its lease in the state database for SCHEDULER_LEASE_SECONDS, "
    "so another host may take the task over."
)


def _progress_writer(
    db: Database, run_id: int, lapsed: Callable[[], bool] | None = None
) -> Callable[[str, int | None], None]:
    """A progress callback that writes at most twice a second, and on every phase change.

    With a lease (several hosts), a run whose lease lapsed stops here, at its next report."""
    last = {"phase": None, "at": 0.0}

    def report(phase: str, percent: int | None) -> None:
        if lapsed is not None and lapsed():
            raise TaskError(LEASE_LOST)
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
