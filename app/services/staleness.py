"""The stale rule, shared by ``/healthz`` and the notifications: no success for longer than
twice the schedule's period."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.db import Database
from app.models import JobRun
from app.services import runs
from app.services.schedules import Schedule, ScheduleError, build_trigger, load_schedule, next_fire_times

PERIOD_SAMPLES = 12


def schedule_period(schedule: Schedule, timezone: str, now: datetime) -> timedelta | None:
    """The longest gap between upcoming runs (a weekly Mon/Thu schedule: four days)."""
    if schedule.mode == "disabled":
        return None
    if schedule.mode == "interval":
        return timedelta(hours=schedule.every_hours)
    try:
        trigger = build_trigger(schedule, timezone)
    except ScheduleError:
        return None
    moments = next_fire_times(trigger, PERIOD_SAMPLES, now)
    gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
    return max(gaps) if gaps else None


@dataclass(frozen=True)
class Staleness:
    """A task's schedule period, its last success, and whether that success is too old."""

    period: timedelta | None
    last_success: JobRun | None
    since: datetime | None  # the last success's end, else when the schedule was saved
    stale: bool


def task_staleness(db: Database, task_id: str, timezone: str, now: datetime) -> Staleness:
    """Whether ``task_id`` has had no success for longer than twice its schedule's period."""
    schedule, row = load_schedule(db, task_id)
    period = schedule_period(schedule, timezone, now)
    last_success = runs.latest_run(db, task_id, status="success", backups_only=True)
    since = last_success.finished_at if last_success else (row.updated_at if row else None)
    stale = period is not None and since is not None and now - since > 2 * period
    return Staleness(period, last_success, since, stale)
