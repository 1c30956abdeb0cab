"""What the UI, API, CLI and health check say about a task: schedule, next run, last runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from sqlalchemy import column, or_, select, table

from app.db import Database
from app.models import JobRun, ScheduleNotice, SchedulerState, utcnow
from app.services import runs
from app.services.registry import TASKS, Task
from app.services.schedules import Schedule, ScheduleError, build_trigger, describe, load_schedule, next_fire_times
from app.services.staleness import schedule_period
from app.services.trigger_migration import read_notice

UPCOMING_COUNT = 5
JOBS_TABLE = "apscheduler_jobs"
STALE_AFTER_SECONDS = 15.0  # a leader heartbeat older than this means the scheduler is not running
# Read-only view of APScheduler's table, so any process can read next run times.
_JOBS = table(JOBS_TABLE, column("id"), column("next_run_time"))


@dataclass(frozen=True)
class SchedulerHealth:
    """Whether a scheduler is enabled and whether its leader's heartbeat is fresh."""

    enabled: bool
    running: bool
    leader: SchedulerState | None
    heartbeat_age: float | None


@dataclass(frozen=True)
class TaskStatus:
    """Everything the status region shows for one task."""

    task: str
    timezone: str
    schedule: Schedule
    description: str
    pending_apply: bool
    next_run_at: datetime | None
    health: SchedulerHealth
    running: JobRun | None
    last_run: JobRun | None
    notice: ScheduleNotice | None = None
    trigger: BaseTrigger | None = field(default=None, repr=False)

    def upcoming(self, count: int = UPCOMING_COUNT) -> list[datetime]:
        """The next ``count`` runs from the real next run on (the API shows them; the poll does not)."""
        moments = [self.next_run_at] if self.next_run_at is not None else []
        while moments and len(moments) < count:
            following = self.trigger.get_next_fire_time(moments[-1], moments[-1])
            if following is None or following <= moments[-1]:
                break
            moments.append(following.astimezone(UTC))
        return moments

    @property
    def overdue(self) -> bool:
        """The next run time has passed without the scheduler firing (it is down)."""
        return self.next_run_at is not None and self.next_run_at < utcnow() and not self.health.running


def scheduler_health(config: Mapping, db: Database) -> SchedulerHealth:
    """The scheduler's health as any process sees it, from the leader's heartbeat."""
    state, age = read_leader_state(db)
    enabled = bool(config["SCHEDULER_ENABLED"])
    return SchedulerHealth(enabled, enabled and heartbeat_is_fresh(age), state, age)


def task_status(config: Mapping, db: Database, task_id: str) -> TaskStatus:
    """Compose the status of one task from the database (works in every worker)."""
    schedule, row = load_schedule(db, task_id)
    timezone = config["SCHEDULER_TIMEZONE"]
    now = utcnow()
    try:
        trigger = build_trigger(schedule, timezone)
    except ScheduleError:
        trigger = None
    pending = row is not None and row.version != row.applied_version and bool(config["SCHEDULER_ENABLED"])
    if trigger is None:
        next_run = None
    elif pending:
        next_run = next(iter(next_fire_times(trigger, 1, now)), None)  # what the leader is about to apply
    else:
        next_run = read_next_run(db, task_id)
    running = runs.latest_run(db, task_id, status="running")
    if running is not None and not runs.is_alive(running, runs.clock(db) if running.lease_until else None):
        running = None
    return TaskStatus(
        task=task_id,
        timezone=timezone,
        schedule=schedule,
        description=_description(task_id, schedule, trigger),
        pending_apply=pending,
        next_run_at=next_run,
        trigger=trigger,
        health=scheduler_health(config, db),
        running=running,
        last_run=_last_finished(db, task_id),
        notice=read_notice(db, task_id),
    )


def _description(task_id: str, schedule: Schedule, trigger: BaseTrigger | None) -> str:
    if schedule.mode == "disabled":
        task = TASKS.get(task_id)
        return f"No automatic {task.noun}s." if task else describe(schedule)
    return describe(schedule) if trigger is not None else "Invalid schedule"


def _last_finished(db: Database, task_id: str) -> JobRun | None:
    for run in runs.recent_runs(db, task_id, limit=5):
        if run.status != "running":
            return run
    return None


@dataclass(frozen=True)
class TaskHealth:
    """What ``/healthz`` (and later, notifications) judge about one task."""

    task: Task
    schedule: Schedule
    active: bool
    last_success: JobRun | None
    last_finished: JobRun | None
    stale_after: timedelta | None  # twice the schedule's period, when the schedule is active

    @property
    def last_success_age(self) -> float | None:
        return None if self.last_success is None else (utcnow() - self.last_success.finished_at).total_seconds()

    def warnings(self) -> list[str]:
        """What needs a look but is not down: the last run succeeded with warnings (an off-site
        copy failed). Said without details: ``/healthz`` is public."""
        last = self.last_finished
        if last is not None and last.status == "warning":
            return [f"The last {self.task.title} run had warnings (an off-site copy failed); see the Settings page."]
        return []

    def problems(self, schedule_saved_at: datetime | None) -> list[str]:
        """Why this task needs attention: its last run failed, or no success for twice its period."""
        found = []
        last = self.last_finished
        if last is not None and last.status == "failed":
            found.append(f"The last {self.task.title} run failed: {last.error}")
        if self.stale_after is not None:
            since = self.last_success.finished_at if self.last_success else schedule_saved_at
            if since is not None and utcnow() - since > self.stale_after:
                hours = f"{self.stale_after.total_seconds() / 3600:g} h"
                found.append(
                    f"The last successful {self.task.noun} is older than twice the schedule's period ({hours})."
                )
        return found


def task_health(
    config: Mapping, db: Database, task: Task, scheduler_enabled: bool
) -> tuple[TaskHealth, datetime | None]:
    """The task's health and when its schedule was saved (the start of "stale" before any success)."""
    schedule, row = load_schedule(db, task.id)
    active = scheduler_enabled and schedule.mode != "disabled"
    finished = [run for run in runs.recent_runs(db, task.id, limit=20) if run.trigger != "restore"]
    last_finished = next((run for run in finished if run.status not in ("running", "missed")), None)
    period = schedule_period(schedule, config["SCHEDULER_TIMEZONE"], utcnow()) if active else None
    health = TaskHealth(
        task=task,
        schedule=schedule,
        active=active,
        last_success=runs.latest_run(db, task.id, status="success", backups_only=True),
        last_finished=last_finished,
        stale_after=None if period is None else 2 * period,
    )
    return health, (row.updated_at if row is not None else None)


def poll_state(db: Database, after: int | None, watched: set[int]) -> tuple[list[JobRun], int, list[int]]:
    """What a Schedule poll needs, read in one snapshot so that no run slips between two reads.

    Returns the runs that finished since the page last looked (newer than ``after``, or
    ``watched`` while running), the newest run id for the next poll, and the runs still
    going (to watch). ``after`` None: a page that knew no run yet announces nothing.
    """
    with db.session() as session:
        query = select(JobRun).where(or_(JobRun.id > (after or 0), JobRun.id.in_(watched), JobRun.status == "running"))
        rows = list(session.scalars(query.order_by(JobRun.id)))
    running = [run for run in rows if run.status == "running"]
    finished = (
        []
        if after is None
        else [run for run in rows if run.status != "running" and (run.id > after or run.id in watched)]
    )
    newest = max([after or 0, *(run.id for run in rows)])
    return finished, newest, [run.id for run in running]


def announcement(task: Task, run: JobRun) -> tuple[str, str]:
    """The toast for a finished run: (category, text), in the task's own words."""
    what = "Restore" if run.trigger == "restore" else task.noun.capitalize()
    if run.status == "warning":
        return "error", f"{what} finished with warnings: {run.file} is kept here; {run.detail or run.error}"
    if run.status == "success":
        result = run.file or ""
        if run.detail:
            result = f"{result}. {run.detail}" if result else run.detail
        return "success", f"{what} finished: {result}".rstrip(": ")
    return "error", f"{what} {run.status}: {run.error or ''}".rstrip(": ")


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
    return state, (runs.clock(db) - state.heartbeat_at).total_seconds()  # written by the database's clock too


def heartbeat_is_fresh(age: float | None) -> bool:
    """Whether a heartbeat of this age means the scheduler is running."""
    return age is not None and age < STALE_AFTER_SECONDS
