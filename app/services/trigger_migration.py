"""Jobs stored before issue 11 keep firing: the leader swaps their triggers for crontab triggers.

Jobs pickled with the old ``WallClockCronTrigger`` (or an ``OrTrigger`` of two, for cron
lines with both day fields) still unpickle. At its reconcile the leader replaces such a
trigger by the one :func:`build_trigger` makes now, keeping the job and its pending fire
time (a catch-up still due stays due). When the next runs differ, it stores a
:class:`ScheduleNotice` with both lists, shown with the status until the schedule is saved.
"""

from __future__ import annotations

import logging
from datetime import datetime

from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from app.db import Database
from app.models import ScheduleNotice, utcnow
from app.services.schedules import Schedule, ScheduleError, build_trigger, next_fire_times

log = logging.getLogger(__name__)

COMPARED_RUNS = 5
CHANGED = (
    "Cron expressions now run exactly as Debian's cron runs them (day fields, steps, clock changes). "
    "This schedule's next runs changed; check that they are what you want. Saving the schedule hides this note."
)
REFUSED = "This stored schedule is not valid crontab and no longer runs: {reason} Choose a new schedule."


def is_legacy_trigger(trigger) -> bool:
    """Whether a stored job's trigger is one of the classes used before crontab triggers."""
    return isinstance(trigger, CronTrigger | OrTrigger)


def migrate_job(scheduler, db: Database, task_id: str, schedule: Schedule, timezone: str) -> None:
    """Give a stored job the current trigger for its schedule, noting a change of its next runs."""
    job = scheduler.get_job(task_id)
    since = job.next_run_time or utcnow()
    before = next_fire_times(job.trigger, COMPARED_RUNS, since)
    try:
        trigger = build_trigger(schedule, timezone)
    except ScheduleError as exc:
        scheduler.remove_job(task_id)
        log.error("stored schedule for %s is no longer valid (%s); job removed", task_id, exc)
        record_notice(db, task_id, REFUSED.format(reason=exc), before, [])
        return
    after = next_fire_times(trigger, COMPARED_RUNS, since)
    if after:
        scheduler.modify_job(task_id, trigger=trigger, next_run_time=after[0])
    else:
        scheduler.remove_job(task_id)
    log.info("job %s now uses %s", task_id, trigger)
    if after != before:
        record_notice(db, task_id, CHANGED, before, after)


def record_notice(db: Database, task_id: str, message: str, before: list[datetime], after: list[datetime]) -> None:
    """Store (or replace) the one-time notice of a task."""
    with db.writer() as session:
        session.merge(
            ScheduleNotice(
                task=task_id,
                message=message,
                runs_before=" ".join(moment.isoformat() for moment in before),
                runs_after=" ".join(moment.isoformat() for moment in after),
                created_at=utcnow(),
            )
        )


def read_notice(db: Database, task_id: str) -> ScheduleNotice | None:
    """The task's notice, if one is showing."""
    with db.session() as session:
        return session.get(ScheduleNotice, task_id)
