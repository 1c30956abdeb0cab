"""The scheduler service: one leader runs APScheduler; every process can read status.

APScheduler 3 cannot share a job store between schedulers (two would double-fire), so
only the process holding the leadership starts one: an ``flock`` on a file beside a
SQLite state database, a lease row in a PostgreSQL one shared by several hosts
(``app/services/leadership.py``). The others retry every few seconds and take over when
the leader dies. Whoever leads, a scheduled run first inserts its row, unique on (task,
fire time): a second leader (one paused past its lease) loses that insert and does
nothing. Our ``schedule_config`` table is the source of truth: any process saves a
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
from datetime import datetime
from pathlib import Path

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from app.db import Database
from app.models import ScheduleConfig, SchedulerState, utcnow
from app.services import notifications, runs
from app.services.leader_scheduler import LeaderExecutor, LeaderScheduler, current_run_times
from app.services.leadership import FileLeadership, Leadership, LeaseLeadership
from app.services.registry import TASKS
from app.services.runner import (
    FireTimeTaken,
    TaskBusy,
    claim_task,
    close_interrupted_runs,
    complete_task,
    lease_seconds,
)
from app.services.schedules import ScheduleError, build_trigger, schedule_from_row
from app.services.status import JOBS_TABLE
from app.services.trigger_migration import is_legacy_trigger, migrate_job

log = logging.getLogger(__name__)

# The one job-store entry point of every task (called with the task id). Stored by name:
# never rename it. Stage-1 jobs name app.tasks:scheduled_backup_job, which still works.
ENTRY_POINT = "app.services.scheduler:run_scheduled_task"
LEGACY_ENTRY_POINTS = {"backup_db": "app.tasks:scheduled_backup_job"}
# Defaults; SCHEDULER_TICK_SECONDS and SCHEDULER_FOLLOWER_RETRY_SECONDS override them (tests shorten them).
TICK_SECONDS = 1.0  # how often the leader checks for saved schedules (applied within ~2 s)
HEARTBEAT_SECONDS = 2.0
FOLLOWER_RETRY_SECONDS = 3.0  # a follower takes over within this (+ start-up) after the leader dies
# The leader's cheap tick checks schedule versions; these look further, less often.
FULL_CHECK_SECONDS = 60.0  # every stored job against its schedule (unpickles each job)
RUN_CHECK_SECONDS = 5.0  # runs whose process died (a killed worker's backup)
LOCK_WAIT_SECONDS = 30 * 60  # a scheduled run waits this long for a running manual backup

_leader: SchedulerService | None = None


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
        self._lock: Leadership
        if db.shared:
            self._lock = LeaseLeadership(db, lease_seconds(config))
        else:
            state_path = Path(config["STATE_DATABASE_PATH"])
            self._lock = FileLeadership(state_path.with_name(state_path.name + ".scheduler.lock"))
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
            executors={"default": LeaderExecutor()},
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
        if not self._lock.renew():
            log.warning("process %d lost the scheduler leadership; stepping down", os.getpid())
            self._resign()
            return
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
            now = runs.database_now(self.db, session)  # several hosts compare it: the shared clock
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
        if self.db.shared:  # several hosts: leases tell, no file lock reaches the others
            for task in TASKS.values():
                if closed := runs.close_dead_runs(self.db, task.id, task.interrupted_message):
                    log.warning("marked %d %s run(s) as interrupted", len(closed), task.id)
            return
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
    run_times = current_run_times() or [None]
    scheduled_for = run_times[-1]
    late = scheduled_for is not None and scheduled_for < service.leader_started_at
    trigger = "catch-up" if late else "scheduled"
    try:
        run, lock = claim_task(service.config, service.db, task_id, trigger, scheduled_for, wait=LOCK_WAIT_SECONDS)
    except FireTimeTaken:
        log.info("%s run for %s was claimed by another process; not running it", task_id, scheduled_for)
        return
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
