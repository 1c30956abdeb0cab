"""The scheduler service: one leader per host runs APScheduler; every process can read status.

APScheduler 3 cannot share a job store between schedulers (two would double-fire), so
only the process holding the leader lock (``flock`` on a file beside the database)
starts one. The others retry the lock every few seconds and take over when the leader
dies. Our ``schedule_config`` table is the source of truth: any process saves a
schedule there, and the leader applies it to its job store when the version changes.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from sqlalchemy import column, select, table

from app.db import Database
from app.models import ScheduleConfig, SchedulerState, utcnow
from app.services import notifications, runs
from app.services.locks import FileLock
from app.services.registry import TASKS
from app.services.runner import TaskBusy, claim_task, close_interrupted_runs, complete_task
from app.services.schedules import ScheduleError, build_trigger, schedule_from_row
from app.services.trigger_migration import is_legacy_trigger, migrate_job

log = logging.getLogger(__name__)

JOBS_TABLE = "apscheduler_jobs"
# The one job-store entry point of every task (called with the task id). Stored by name:
# never rename it. Stage-1 jobs name app.tasks:scheduled_backup_job, which still works.
ENTRY_POINT = "app.services.scheduler:run_scheduled_task"
LEGACY_ENTRY_POINTS = {"backup_db": "app.tasks:scheduled_backup_job"}
# Defaults; SCHEDULER_TICK_SECONDS and SCHEDULER_FOLLOWER_RETRY_SECONDS override them (tests shorten them).
TICK_SECONDS = 1.0  # how often the leader checks for saved schedules (applied within ~2 s)
HEARTBEAT_SECONDS = 2.0
FOLLOWER_RETRY_SECONDS = 3.0  # a follower takes over within this (+ start-up) after the leader dies
STALE_AFTER_SECONDS = 15.0
# The leader's cheap tick checks schedule versions; these look further, less often.
FULL_CHECK_SECONDS = 60.0  # every stored job against its schedule (unpickles each job)
RUN_CHECK_SECONDS = 5.0  # runs whose process died (a killed worker's backup)
LOCK_WAIT_SECONDS = 30 * 60  # a scheduled run waits this long for a running manual backup

# Read-only view of APScheduler's table, so any process can read next run times.
_JOBS = table(JOBS_TABLE, column("id"), column("next_run_time"))
_run_context = threading.local()
_leader: SchedulerService | None = None


class _RunTimesPool:
    """Wraps the executor's thread pool to tell the job which fire time it is running for.

    APScheduler 3 does not pass the scheduled time to the job function; we need it to
    record ``scheduled_for`` and to tell a catch-up run from a punctual one.
    """

    def __init__(self, pool) -> None:
        self._pool = pool

    def submit(self, run_job, job, jobstore_alias, run_times, logger_name):
        return self._pool.submit(_run_with_times, run_job, job, jobstore_alias, run_times, logger_name)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait)


def _run_with_times(run_job, job, jobstore_alias, run_times, logger_name):
    _run_context.run_times = run_times
    try:
        return run_job(job, jobstore_alias, run_times, logger_name)
    finally:
        _run_context.run_times = None


class _LeaderExecutor(ThreadPoolExecutor):
    def __init__(self, max_workers: int = 4) -> None:
        super().__init__(max_workers)
        self._pool = _RunTimesPool(self._pool)


class LeaderScheduler(BackgroundScheduler):
    """A BackgroundScheduler that does nothing once shut down.

    APScheduler 3's loop runs ``_process_jobs`` once more after ``shutdown()`` wakes it:
    a job due at that moment is "submitted" to the stopped executor (an error) and its
    next run time is advanced in the store, so that run would be lost for the next leader.
    """

    def _process_jobs(self):
        if self.state == STATE_STOPPED:
            return None
        return super()._process_jobs()


class SchedulerService:
    """Leader election, the APScheduler instance of the leader, reconcile and heartbeat."""

    def __init__(self, config: Mapping, db: Database) -> None:
        self.config = config
        self.db = db
        self.enabled: bool = bool(config["SCHEDULER_ENABLED"])
        self.timezone: str = config["SCHEDULER_TIMEZONE"]
        self.misfire_grace: int = int(config["SCHEDULER_MISFIRE_GRACE_SECONDS"])
        self.tick_seconds = float(config.get("SCHEDULER_TICK_SECONDS", TICK_SECONDS))
        self.follower_retry_seconds = float(config.get("SCHEDULER_FOLLOWER_RETRY_SECONDS", FOLLOWER_RETRY_SECONDS))
        state_path = Path(config["STATE_DATABASE_PATH"])
        self._lock = FileLock(state_path.with_name(state_path.name + ".scheduler.lock"))
        self._scheduler: BackgroundScheduler | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leader_started_at: datetime | None = None
        self._last_heartbeat = 0.0
        self._last_full_check = self._last_run_check = time.monotonic()
        with db.init_lock():
            SQLAlchemyJobStore(engine=db.engine, tablename=JOBS_TABLE).jobs_t.create(db.engine, checkfirst=True)

    @property
    def is_leader(self) -> bool:
        """True in the one process that runs the scheduler."""
        return self._scheduler is not None

    def start(self) -> bool:
        """Start competing for leadership in a background thread (no-op when disabled)."""
        if not self.enabled or self._thread is not None:
            return False
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="scheduler-leader", daemon=True)
        self._thread.start()
        atexit.register(self.stop)
        return True

    def stop(self) -> None:
        """Stop the scheduler (if leading) and give up the lock."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self._thread = None
        self._resign()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.is_leader:
                    self._lead()
                elif self._lock.try_acquire():
                    self._take_over()
            except Exception:
                log.exception("scheduler leader loop failed; resigning and retrying")
                self._resign()
            self._stop.wait(self.tick_seconds if self.is_leader else self.follower_retry_seconds)

    def _take_over(self) -> None:
        global _leader
        log.info("process %d is the scheduler leader", os.getpid())
        scheduler = LeaderScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.db.engine, tablename=JOBS_TABLE)},
            executors={"default": _LeaderExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": self.misfire_grace},
            timezone=self.timezone,
        )
        scheduler.add_listener(self._on_skipped, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self.leader_started_at = utcnow()
        _leader = self
        # Paused until reconciled: a schedule changed while no leader ran must not first
        # fire under its old trigger.
        scheduler.start(paused=True)
        self._scheduler = scheduler
        self._close_interrupted_runs()
        self.reconcile()
        self._last_full_check = self._last_run_check = time.monotonic()
        self._beat(force=True)
        scheduler.resume()

    def _lead(self) -> None:
        thread = getattr(self._scheduler, "_thread", None)
        if thread is None or not thread.is_alive():
            raise RuntimeError("the APScheduler thread died")
        now = time.monotonic()
        full = now - self._last_full_check >= FULL_CHECK_SECONDS
        if full:
            self._last_full_check = now
        self.reconcile(full=full)
        if full or now - self._last_run_check >= RUN_CHECK_SECONDS:
            self._last_run_check = now
            self._close_interrupted_runs()
        self._beat()
        notifications.leader_tick(self.config, self.db)

    def _resign(self) -> None:
        global _leader
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            try:
                scheduler.shutdown(wait=False)
            except Exception:
                log.exception("scheduler shutdown failed")
        if _leader is self:
            _leader = None
        self._lock.release()

    def reconcile(self, full: bool = True) -> list[str]:
        """Apply saved schedules whose version changed to the job store; return the tasks changed.

        ``full`` also compares every stored job with its schedule (a job missing or left
        over, a stage-1 entry point or trigger): that unpickles each job, so the leader does
        it at start and once a minute, and checks only the versions every tick.
        """
        changed = []
        with self.db.session() as session:
            configs = {row.task: row for row in session.scalars(select(ScheduleConfig))}
        for task in TASKS.values():
            config = configs.get(task.id)
            if not full and (config is None or config.version == config.applied_version):
                continue
            job = self._scheduler.get_job(task.id)
            up_to_date = config is None or config.version == config.applied_version
            if up_to_date and (job is not None) == (config is not None and config.mode != "disabled"):
                if job is not None and job.func_ref != ENTRY_POINT:
                    # A stage-1 job: same trigger and pending fire time, the one entry point.
                    self._scheduler.modify_job(task.id, func=ENTRY_POINT, args=[task.id])
                    changed.append(task.id)
                if job is not None and is_legacy_trigger(job.trigger):
                    migrate_job(self._scheduler, self.db, task.id, schedule_from_row(config), self.timezone)
                    changed.append(task.id)
                continue
            self._apply(task, config)
            changed.append(task.id)
        return changed

    def _apply(self, task, config: ScheduleConfig | None) -> None:
        schedule = schedule_from_row(config)
        try:
            trigger = build_trigger(schedule, self.timezone)
        except ScheduleError as exc:
            log.error("stored schedule for %s is invalid (%s); leaving it unscheduled", task.id, exc)
            trigger = None
        if trigger is None:
            if self._scheduler.get_job(task.id) is not None:
                self._scheduler.remove_job(task.id)
        else:
            self._scheduler.add_job(
                ENTRY_POINT, trigger, args=[task.id], id=task.id, name=task.title, replace_existing=True
            )
        if config is not None:
            with self.db.writer() as session:
                row = session.get(ScheduleConfig, task.id)
                row.applied_version = config.version
        log.info("applied schedule for %s: %s", task.id, schedule.as_dict())

    def _beat(self, force: bool = False) -> None:
        now = utcnow()
        if not force and (now.timestamp() - self._last_heartbeat) < HEARTBEAT_SECONDS:
            return
        self._last_heartbeat = now.timestamp()
        with self.db.writer() as session:
            state = session.get(SchedulerState, 1)
            if state is None or state.leader_pid != os.getpid() or state.started_at != self.leader_started_at:
                session.merge(
                    SchedulerState(
                        id=1,
                        leader_pid=os.getpid(),
                        leader_host=socket.gethostname(),
                        started_at=self.leader_started_at,
                        heartbeat_at=now,
                    )
                )
            else:
                state.heartbeat_at = now

    def _close_interrupted_runs(self) -> None:
        """Mark runs whose process died as interrupted (e.g. a worker killed mid-backup)."""
        for task in TASKS.values():
            stale = runs.latest_run(self.db, task.id, status="running")
            if stale is None or runs.is_alive(stale):
                continue
            lock = task.lock(self.config)
            if lock.try_acquire():
                try:
                    close_interrupted_runs(self.config, self.db, task)
                finally:
                    lock.release()

    def _on_skipped(self, event) -> None:
        if event.job_id not in TASKS:
            return
        if event.code == EVENT_JOB_MISSED:
            hours = self.misfire_grace / 3600
            reason = (
                "The scheduler was not running at this time and came back more than "
                f"{hours:g} h later (the catch-up window), so this run was skipped."
            )
        else:
            reason = "Skipped because the previous run of this task was still going."
        # A missed run's event names one time; a max-instances event lists the run times.
        scheduled_for = getattr(event, "scheduled_run_time", None) or event.scheduled_run_times[-1]
        runs.record_missed_run(self.db, event.job_id, scheduled_for, reason)


def run_scheduled_task(task_id: str) -> None:
    """Body of every scheduled job: claim the task, run it, record it (leader process only)."""
    service = _leader
    if service is None:
        log.error("scheduled job %s fired outside a leader; ignored", task_id)
        return
    run_times = getattr(_run_context, "run_times", None) or [None]
    scheduled_for = run_times[-1]
    late = scheduled_for is not None and scheduled_for < service.leader_started_at
    trigger = "catch-up" if late else "scheduled"
    try:
        run, lock = claim_task(service.config, service.db, task_id, trigger, scheduled_for, wait=LOCK_WAIT_SECONDS)
    except TaskBusy:
        _record_skip(
            service, task_id, scheduled_for, f"another backup was still running after {LOCK_WAIT_SECONDS // 60} minutes"
        )
        return
    except Exception as exc:  # e.g. the database locked past its busy timeout: never skip silently
        log.exception("scheduled %s run could not start", task_id)
        _record_skip(service, task_id, scheduled_for, f"the run could not start ({exc})")
        return
    complete_task(service.config, service.db, run, lock)


def _record_skip(service: SchedulerService, task_id: str, scheduled_for: datetime | None, why: str) -> None:
    try:
        runs.record_missed_run(service.db, task_id, scheduled_for or utcnow(), f"Skipped: {why}.")
    except Exception:
        log.exception("could not record the skipped %s run either", task_id)


def read_next_run(db: Database, task_id: str) -> datetime | None:
    """The next fire time the job store holds for a task (any process can read it)."""
    with db.session() as session:
        value = session.execute(select(_JOBS.c.next_run_time).where(_JOBS.c.id == task_id)).scalar_one_or_none()
    if value is None:
        return None
    return datetime.fromtimestamp(value, tz=UTC)


def stored_jobs(db: Database) -> list[tuple[str, datetime | None]]:
    """(job id, next run time) for every job in APScheduler's store; None means paused."""
    with db.session() as session:
        rows = session.execute(select(_JOBS.c.id, _JOBS.c.next_run_time)).all()
    return [(job_id, None if value is None else datetime.fromtimestamp(value, tz=UTC)) for job_id, value in rows]


def read_leader_state(db: Database) -> tuple[SchedulerState | None, float | None]:
    """The heartbeat row and its age in seconds (None when no leader ever ran)."""
    with db.session() as session:
        state = session.get(SchedulerState, 1)
    if state is None:
        return None, None
    return state, (utcnow() - state.heartbeat_at).total_seconds()


def heartbeat_is_fresh(age: float | None) -> bool:
    """Whether a heartbeat of this age means the scheduler is running."""
    return age is not None and age < STALE_AFTER_SECONDS
