"""Schedules: what a user chose -> an APScheduler trigger, a plain-English text, next runs.

This is the only place a trigger is built from a schedule. Two crontab traps of
APScheduler 3 are handled here: it numbers weekdays from Monday=0 (crontab: Sunday=0),
and it ANDs day-of-month with day-of-week where crontab ORs them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from cron_descriptor import ExpressionDescriptor, Options

MODES = {
    "disabled": "Disabled",
    "daily": "Daily",
    "weekly": "Weekly",
    "cron": "Cron expression",
    "interval": "Every N hours",
}
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
TIME_OF_DAY = re.compile(r"^(\d{1,2}):(\d{2})$")
# Crontab numbering (0 and 7 are Sunday) to names, which APScheduler reads unambiguously.
CRONTAB_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_ITEM = re.compile(r"^(\*|[0-7]|[a-z]{3})(?:-([0-7]|[a-z]{3}))?(?:/(\d+))?$")


class WallClockCronTrigger(CronTrigger):
    """A CronTrigger that runs a fixed wall-clock time once when clocks go back.

    On the autumn DST day 02:30 happens twice; APScheduler 3 fires at both. Like cron,
    a job at a fixed hour runs once (at the first); jobs with a wildcard hour keep
    running every real hour. The job store pickles this class by name: never rename it.
    """

    def __init__(self, *args, once_per_wall_time: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.once_per_wall_time = once_per_wall_time

    def get_next_fire_time(self, previous_fire_time, now):
        upcoming = super().get_next_fire_time(previous_fire_time, now)
        if self.once_per_wall_time and previous_fire_time is not None:
            # Wall-clock time only goes backwards when clocks go back: skip the repeated hour.
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
    """The naive local time on the wall clock (via UTC, so a same-zone value is normalised)."""
    return moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None)


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
        """The same schedule with the other modes' fields cleared."""
        if self.mode == "daily":
            return Schedule("daily", time=self.time)
        if self.mode == "weekly":
            ordered = tuple(day for day in WEEKDAYS if day in self.weekdays)
            return Schedule("weekly", time=self.time, weekdays=ordered)
        if self.mode == "cron":
            return Schedule("cron", cron=" ".join((self.cron or "").split()))
        if self.mode == "interval":
            return Schedule("interval", every_hours=self.every_hours)
        return Schedule("disabled")

    def as_dict(self) -> dict:
        """The JSON shape: ``mode`` plus the fields of that mode."""
        data: dict = {"mode": self.mode}
        if self.mode in ("daily", "weekly"):
            data["time"] = self.time
        if self.mode == "weekly":
            data["weekdays"] = list(self.weekdays)
        if self.mode == "cron":
            data["cron"] = self.cron
        if self.mode == "interval":
            data["every_hours"] = self.every_hours
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
    if mode in ("daily", "weekly"):
        hour, minute = parse_time_of_day(schedule.time or "")
        if mode == "daily":
            return WallClockCronTrigger(hour=hour, minute=minute, timezone=zone)
        if not schedule.weekdays:
            raise ScheduleError("Choose at least one weekday.")
        unknown = [day for day in schedule.weekdays if day not in WEEKDAYS]
        if unknown:
            raise ScheduleError(f"Unknown weekday: {unknown[0]}.")
        days = ",".join(day for day in WEEKDAYS if day in schedule.weekdays)
        return WallClockCronTrigger(day_of_week=days, hour=hour, minute=minute, timezone=zone)
    if mode == "cron":
        return _crontab_trigger(schedule.cron or "", zone)
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
        options = Options()
        options.use_24hour_time_format = True
        options.verbose = False
        return ExpressionDescriptor(schedule.cron or "", options).get_description()
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


def _crontab_trigger(expression: str, zone: ZoneInfo) -> BaseTrigger:
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"A cron expression has 5 fields (minute hour day month weekday); this one has {len(fields)}."
        )
    minute, hour, day, month, weekday = fields
    weekday = _crontab_weekdays(weekday.lower())
    common = {"minute": minute, "hour": hour, "month": month, "timezone": zone}
    common["once_per_wall_time"] = not hour.startswith("*")
    try:
        if day != "*" and weekday != "*":
            # crontab runs when either field matches; APScheduler would need both.
            return OrTrigger(
                [WallClockCronTrigger(day=day, **common), WallClockCronTrigger(day_of_week=weekday, **common)]
            )
        return WallClockCronTrigger(day=day, day_of_week=weekday, **common)
    except ValueError as exc:
        raise ScheduleError(_explain_cron_error(fields, zone, exc)) from None


CRON_FIELDS = (("minute", "minute"), ("hour", "hour"), ("day", "day-of-month"), ("month", "month"))


def _explain_cron_error(fields: list[str], zone: ZoneInfo, error: ValueError) -> str:
    """Name the field that APScheduler rejected, with its reason."""
    for (name, label), value in zip(CRON_FIELDS, fields, strict=False):
        try:
            CronTrigger(timezone=zone, **{name: value})
        except ValueError as exc:
            reason = str(exc).split(": ", 1)[-1]
            return f"Invalid {label} field {value!r}: {reason}."
    return f"Invalid cron expression: {error}."


def _crontab_weekdays(text: str) -> str:
    """A crontab weekday field -> an explicit, APScheduler-safe list of day names."""
    if text == "*":
        return "*"
    days: set[int] = set()
    for item in text.split(","):
        match = DAY_ITEM.match(item)
        if not match:
            raise ScheduleError(f"Invalid weekday field item {item!r}: use 0-7 or sun-sat, ranges and steps.")
        start, end, step = match.groups()
        if start == "*":
            first, last = 0, 6
        else:
            first = _day_number(start)
            last = _day_number(end) if end else (6 if step else first)
        if last < first:
            if last == 0:
                last = 7  # "5-0" and "fri-sun" end on Sunday
            else:
                raise ScheduleError(f"Invalid weekday range {item!r}: the start is after the end.")
        step_size = int(step) if step else 1
        if step_size < 1:
            raise ScheduleError(f"Invalid weekday step in {item!r}.")
        days.update(number % 7 for number in range(first, last + 1, step_size))
    return ",".join(CRONTAB_DAYS[number] for number in sorted(days))


def _day_number(token: str) -> int:
    if token.isdigit():
        return int(token)
    if token in CRONTAB_DAYS:
        return CRONTAB_DAYS.index(token)
    raise ScheduleError(f"Unknown weekday {token!r}: use 0-7 or sun-sat.")
