"""Schedules: what a user chose -> an APScheduler trigger, a plain-English text, next runs.

This is the only place a trigger is built from a schedule. Daily, weekly and cron
schedules are all crontab lines run by one trigger (:mod:`app.services.crontab`), so they
share Debian cron's rules, DST included; "every N hours" counts elapsed time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from app.db import Database
from app.models import ScheduleConfig, ScheduleNotice, utcnow
from app.services.cron_description import describe_crontab
from app.services.crontab import NEVER_RUNS, CrontabError, CrontabTrigger, parse_crontab


@dataclass(frozen=True)
class Mode:
    """One strategy: its label and the fields it uses (the only table of them)."""

    label: str
    fields: tuple[str, ...]


MODE_TABLE = {
    "disabled": Mode("Disabled", ()),
    "daily": Mode("Daily", ("time",)),
    "weekly": Mode("Weekly", ("time", "weekdays")),
    "cron": Mode("Cron expression", ("cron",)),
    "interval": Mode("Every N hours", ("every_hours",)),
}
MODES = {name: mode.label for name, mode in MODE_TABLE.items()}
MODE_FIELDS = {name: mode.fields for name, mode in MODE_TABLE.items()}
WEEKDAYS = {
    "mon": "Monday",
    "tue": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}
MIN_HOURS, MAX_HOURS = 1, 168
TIME_OF_DAY = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")


class ScheduleError(ValueError):
    """A schedule that cannot be built; the message is fit to show next to the field."""


@dataclass(frozen=True)
class Schedule:
    """One task's schedule; only the fields of ``mode`` are meaningful."""

    mode: str = "disabled"
    time: str | None = None
    weekdays: tuple[str, ...] = field(default_factory=tuple)
    cron: str | None = None
    every_hours: int | None = None

    def normalized(self) -> Schedule:
        """The same schedule with the other modes' fields cleared (weekdays in week order, cron spaced once)."""
        if self.mode not in MODE_TABLE:
            return Schedule("disabled")
        values = {
            "time": self.time,
            "weekdays": tuple(day for day in WEEKDAYS if day in self.weekdays),
            "cron": " ".join((self.cron or "").split()),
            "every_hours": self.every_hours,
        }
        return Schedule(self.mode, **{name: values[name] for name in MODE_TABLE[self.mode].fields})

    def as_dict(self) -> dict:
        """The JSON shape: ``mode`` plus the fields of that mode."""
        data: dict = {"mode": self.mode}
        for name in MODE_TABLE.get(self.mode, MODE_TABLE["disabled"]).fields:
            value = getattr(self, name)
            data[name] = list(value) if name == "weekdays" else value
        return data


def parse_time_of_day(value: str) -> tuple[int, int]:
    """``"HH:MM"`` -> (hour, minute), rejecting hour 24 and minute 60."""
    match = TIME_OF_DAY.match((value or "").strip())
    if not match:
        raise ScheduleError("Enter a time as HH:MM, e.g. 02:30.")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23:
        raise ScheduleError("The hour must be from 00 to 23.")
    if minute > 59:
        raise ScheduleError("The minutes must be from 00 to 59.")
    return hour, minute


def build_trigger(schedule: Schedule, timezone: str, start_date: datetime | None = None) -> BaseTrigger | None:
    """The APScheduler trigger for a schedule (None when disabled); raises :class:`ScheduleError`."""
    zone = ZoneInfo(timezone)
    mode = schedule.mode
    if mode == "disabled":
        return None
    if mode in ("daily", "weekly", "cron"):
        try:
            return CrontabTrigger(crontab_line(schedule), zone)
        except CrontabError as exc:
            raise ScheduleError(str(exc)) from None
    if mode == "interval":
        hours = schedule.every_hours
        if not isinstance(hours, int) or not MIN_HOURS <= hours <= MAX_HOURS:
            raise ScheduleError(f"Enter a whole number of hours from {MIN_HOURS} to {MAX_HOURS}.")
        return IntervalTrigger(hours=hours, timezone=zone, start_date=start_date)
    raise ScheduleError(f"Unknown strategy {mode!r}.")


def describe(schedule: Schedule) -> str:
    """A plain-English sentence for a (valid) schedule."""
    mode = schedule.mode
    if mode == "disabled":
        return "No automatic backups."
    if mode == "daily":
        return f"Every day at {schedule.time}"
    if mode == "weekly":
        names = [WEEKDAYS[day] for day in WEEKDAYS if day in schedule.weekdays]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"Every {listed} at {schedule.time}"
    if mode == "cron":
        return describe_crontab(parse_crontab(schedule.cron or ""))
    if mode == "interval":
        hours = schedule.every_hours
        return "Every hour" if hours == 1 else f"Every {hours} hours"
    return "Unknown schedule"


def next_fire_times(trigger: BaseTrigger | None, count: int, now: datetime) -> list[datetime]:
    """The next ``count`` fire times of ``trigger`` after ``now``, in UTC.

    APScheduler can return a wall time that does not exist (02:30 on the spring DST day,
    meaning 03:30); converting to UTC normalises it, and later conversions show it right.
    """
    times: list[datetime] = []
    previous = None
    moment = now
    while trigger is not None and len(times) < count:
        upcoming = trigger.get_next_fire_time(previous, moment)
        if upcoming is None:
            break
        times.append(upcoming.astimezone(UTC))
        previous = upcoming
        moment = upcoming
    return times


def crontab_line(schedule: Schedule) -> str:
    """The crontab line of a daily, weekly or cron schedule; raises :class:`ScheduleError`."""
    if schedule.mode == "cron":
        return schedule.cron or ""
    hour, minute = parse_time_of_day(schedule.time or "")
    if schedule.mode == "daily":
        return f"{minute} {hour} * * *"
    if not schedule.weekdays:
        raise ScheduleError("Choose at least one weekday.")
    unknown = [day for day in schedule.weekdays if day not in WEEKDAYS]
    if unknown:
        raise ScheduleError(f"Unknown weekday: {unknown[0]}.")
    return f"{minute} {hour} * * {','.join(day for day in WEEKDAYS if day in schedule.weekdays)}"


class WallClockCronTrigger(CronTrigger):
    """The cron trigger before issue 11, kept so that jobs already in the job store unpickle.

    The store pickles triggers by module and class name, and silently deletes a job it
    cannot unpickle: never rename or move this class. The leader replaces it with
    :class:`CrontabTrigger` at its next reconcile (``app.services.trigger_migration``).
    """

    def __init__(self, *args, once_per_wall_time: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.once_per_wall_time = once_per_wall_time

    def get_next_fire_time(self, previous_fire_time, now):
        upcoming = super().get_next_fire_time(previous_fire_time, now)
        if self.once_per_wall_time and previous_fire_time is not None:
            previous_wall = _wall_time(previous_fire_time, self.timezone)
            while upcoming is not None and _wall_time(upcoming, self.timezone) <= previous_wall:
                upcoming = super().get_next_fire_time(upcoming, upcoming)
        return upcoming

    def __getstate__(self):
        state = super().__getstate__()
        state["once_per_wall_time"] = self.once_per_wall_time
        return state

    def __setstate__(self, state):
        self.once_per_wall_time = state.pop("once_per_wall_time", True)
        super().__setstate__(state)


def _wall_time(moment: datetime, zone) -> datetime:
    return moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None)


def schedule_from_row(row: ScheduleConfig | None) -> Schedule:
    """The :class:`Schedule` a stored row describes (disabled when there is none)."""
    if row is None:
        return Schedule()
    weekdays = tuple(day for day in (row.weekdays or "").split(",") if day)
    return Schedule(row.mode, row.time, weekdays, row.cron, row.every_hours)


def load_schedule(db: Database, task_id: str) -> tuple[Schedule, ScheduleConfig | None]:
    """The saved schedule of a task and its row (None when never saved)."""
    with db.session() as session:
        row = session.get(ScheduleConfig, task_id)
    return schedule_from_row(row), row


def save_schedule(db: Database, task_id: str, schedule: Schedule) -> ScheduleConfig:
    """Store a validated schedule; the version changes only when the schedule does.

    Saving, even unchanged, also hides the task's one-time notice (the user has seen it).
    """
    schedule = schedule.normalized()
    values = {
        "mode": schedule.mode,
        "time": schedule.time,
        "weekdays": ",".join(schedule.weekdays) or None,
        "cron": schedule.cron,
        "every_hours": schedule.every_hours,
    }
    with db.writer() as session:
        row = session.get(ScheduleConfig, task_id)
        if row is None:
            row = ScheduleConfig(task=task_id, version=1, applied_version=0, updated_at=utcnow(), **values)
            session.add(row)
        elif any(getattr(row, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(row, key, value)
            row.version += 1
            row.updated_at = utcnow()
        notice = session.get(ScheduleNotice, task_id)
        if notice is not None:
            session.delete(notice)
    return row


PREVIEW_COUNT = 5


def preview(schedule: Schedule, timezone: str, now: datetime) -> dict:
    """What an unsaved schedule means: its description and next runs, or why it never runs.

    ``refresh_after`` is when the list must be asked for again (its first run has passed).
    """
    trigger = build_trigger(schedule, timezone)
    if schedule.mode == "interval":
        # Elapsed time from the save: the real next run is the status's, not a guess from now.
        return {"error": None, "description": describe(schedule), "upcoming": []}
    upcoming = next_fire_times(trigger, PREVIEW_COUNT, now)
    if not upcoming:
        return {"error": NEVER_RUNS, "description": None, "upcoming": []}
    refresh_after = min(int((upcoming[0] - now).total_seconds()) + 2, 24 * 3600)
    return {"error": None, "description": describe(schedule), "upcoming": upcoming, "refresh_after": refresh_after}
