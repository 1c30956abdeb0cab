"""Crontab lines as Debian's cron reads and runs them: grammar, day rule, DST, a trigger.

The grammar is Debian cron's (entry.c): five fields, numbers with or without leading
zeros, three-letter month and weekday names, ``*``, ranges, steps and lists; 0 and 7 are
Sunday. Day-of-month and weekday are AND-ed when either field starts with ``*`` and
OR-ed only when both are restricted (cron.c). We refuse what cron refuses, plus three
things cron accepts silently but that are surely typos: characters after a valid item
(``5!``), reversed ranges (``fri-sun``, which never matches in cron) and dates that never
come (``0 0 31 2 *``).

Matching wall-clock minutes is cronsim's job (written to match Debian's cron); turning
wall-clock minutes into real instants around DST changes is :func:`_instants`, the one
place our DST rule lives.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from cronsim import CronSim, CronSimError


class CrontabError(ValueError):
    """A crontab line cron would not run; the message names the field and the reason."""


NEVER_RUNS = "This expression matches no date (e.g. 31 February): no backup would ever run."
# What :func:`_instants` does, in the words the UI shows (Debian cron(8), "Daylight Saving Time").
DST_RULE = (
    "When clocks go forward, a time in the skipped hour runs right after the change (02:30 runs at 03:00); "
    "when they go back, a time in the repeated hour runs once."
)
DST_RULE_WILDCARD = (
    "With * in the minute or hour field, runs follow the clock instead: "
    "minutes that are skipped do not run, and minutes that repeat run again."
)
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# One item: "*" or a value or a range, then an optional step (ASCII only: "٣" is no digit to cron).
ITEM = re.compile(r"(?:(\*)|([0-9A-Za-z]+)(?:-([0-9A-Za-z]*))?)(?:/([0-9A-Za-z]*))?", re.ASCII)
MINUTE = timedelta(minutes=1)
LONGEST_DST_SHIFT = timedelta(hours=3)  # cron.c treats larger clock jumps as "time changed a lot"


@dataclass(frozen=True)
class _Field:
    label: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES, 1),
    _Field("weekday", 0, 7, DAY_NAMES, 0),
)


@dataclass(frozen=True)
class Crontab:
    """A parsed crontab line: the set of values of each field and how the day fields combine."""

    text: str
    engine_text: str  # the same line as cronsim must read it (see _one_value_ranges)
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0-6, Sunday is 0
    days_and: bool  # day-of-month AND weekday (either starts with "*"); else OR
    wildcard_time: bool  # minute or hour starts with "*": cron's rules for such jobs at DST changes

    @property
    def day_fields_restricted(self) -> tuple[bool, bool]:
        """Whether day-of-month and weekday each leave out some values."""
        return len(self.days) < 31, len(self.weekdays) < 7


def parse_crontab(text: str) -> Crontab:
    """Parse a five-field crontab line; raises :class:`CrontabError` naming the bad field."""
    fields = text.split()
    if len(fields) == 1 and fields[0].lower() in MACROS:
        raise CrontabError(
            f"Shortcuts like {fields[0]} are not supported: write the five fields ({MACROS[fields[0].lower()]})."
        )
    if len(fields) != 5:
        raise CrontabError(
            f"A cron expression has 5 fields (minute hour day-of-month month weekday); this one has {len(fields)}."
        )
    values = [_parse_field(spec, value) for spec, value in zip(FIELDS, fields, strict=True)]
    minutes, hours, days, months, weekdays = values
    weekdays = frozenset(day % 7 for day in weekdays)
    days_and = fields[2].startswith("*") or fields[4].startswith("*")
    if days_and and not any(day <= _longest(month) for month in months for day in days):
        raise CrontabError(NEVER_RUNS)
    wildcard_time = fields[0].startswith("*") or fields[1].startswith("*")
    engine_text = " ".join(_one_value_ranges(spec, value) for spec, value in zip(FIELDS, fields, strict=True))
    return Crontab(" ".join(fields), engine_text, minutes, hours, days, months, weekdays, days_and, wildcard_time)


def _one_value_ranges(spec: _Field, text: str) -> str:
    """The field with ``18-18/2`` written ``18``, for cronsim.

    cronsim reads a one-value range with a step as ``18/2`` (18, 20, 22); cron reads 18.
    Star items stay as they are: a leading ``*`` decides the day rule.
    """
    items = []
    for item in text.split(","):
        values = item_values(spec, text, item)
        items.append(str(values[0]) if "/" in item and not item.startswith("*") and len(values) == 1 else item)
    return ",".join(items)


def _longest(month: int) -> int:
    return 29 if month == 2 else calendar.monthrange(2001, month)[1]


def _parse_field(spec: _Field, text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(item_values(spec, text, item))
    return frozenset(values)


def item_values(spec: _Field, text: str, item: str) -> range:
    """The values one list item of a field stands for (``text`` is the whole field, for messages)."""

    def fail(reason: str) -> CrontabError:
        return CrontabError(f"Invalid {spec.label} field {text!r}: {reason}.")

    match = ITEM.fullmatch(item)
    if not item:
        raise fail("an item is empty (two commas, or a comma at an end)")
    if match is None:
        raise fail(f"{item!r} is not crontab; use numbers, names, *, ranges (a-b), steps (/n) and lists (a,b)")
    star, first, last, step = match.groups()
    if star:
        start, end = spec.low, spec.high
    else:
        start = _value(spec, first, fail)
        end = start if last is None else _value(spec, last, fail)
        if last is None and step is not None:
            raise fail(f"a step needs a range or *, e.g. {first}-{spec.high}/{step}")
        if end < start:
            raise fail(f"in {item!r} the start is after the end, so it never matches; e.g. write {start}-{spec.high}")
    if step is None:
        return range(start, end + 1)
    if not step.isdigit() or int(step) == 0:
        raise fail(f"the step in {item!r} must be a whole number from 1")
    return range(start, end + 1, int(step))


def _value(spec: _Field, token: str, fail) -> int:
    if token == "":
        raise fail("a range needs an end")
    if token.isdigit():  # ASCII only: the ITEM pattern allows nothing else
        number = int(token)
        if not spec.low <= number <= spec.high:
            raise fail(f"{token} is out of range {spec.low}-{spec.high}")
        return number
    if token.lower() in spec.names:
        return spec.names.index(token.lower()) + spec.name_base
    if spec.names:
        raise fail(f"{token!r} is not a number or a name ({', '.join(spec.names[:3])}, ...)")
    raise fail(f"{token!r} is not a number")


class CrontabTrigger(BaseTrigger):
    """An APScheduler 3 trigger that fires when Debian's cron would run a crontab line.

    It holds only the expression and the zone, so the job store's pickle stays small and
    readable across versions. The job store pickles this class by name: never rename it.
    """

    __slots__ = ("crontab", "timezone")

    def __init__(self, expression: str, timezone: ZoneInfo | str) -> None:
        self.crontab = parse_crontab(expression)
        self.timezone = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)

    @property
    def expression(self) -> str:
        return self.crontab.text

    def __getstate__(self) -> dict:
        return {"version": 1, "expression": self.crontab.text, "timezone": self.timezone.key}

    def __setstate__(self, state: dict) -> None:
        self.crontab = parse_crontab(state["expression"])
        self.timezone = ZoneInfo(state["timezone"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CrontabTrigger) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash((self.crontab.text, self.timezone.key))

    def __str__(self) -> str:
        return f"crontab[{self.crontab.text}]"

    def __repr__(self) -> str:
        return f"<CrontabTrigger ({self.crontab.text!r}, timezone={self.timezone.key!r})>"

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        """The first fire time at or after ``now`` (or just after the previous one, as CronTrigger does).

        Times are returned in UTC: arithmetic and comparisons of two datetimes in one zone
        are naive in Python, so 02:30 CET would sort before 02:45 CEST.
        """
        start = now.astimezone(UTC)
        if previous_fire_time is not None:
            # Never the previous time again; from just after it even if "now" is later (catch-up).
            start = previous_fire_time.astimezone(UTC) + timedelta(microseconds=1)
        return first_run_at_or_after(self.crontab, self.timezone, start)


def first_run_at_or_after(crontab: Crontab, zone: ZoneInfo, start: datetime) -> datetime | None:
    """The first instant (UTC, whole minute) at or after ``start`` when cron runs the line."""
    start = start.astimezone(UTC)
    if start.second or start.microsecond:
        start = start.replace(second=0, microsecond=0) + MINUTE
    wall = _wall(start, zone)
    # When clocks go back soon, wall times after ``start`` can be earlier than its own.
    shift = start.astimezone(zone).utcoffset() - (start + LONGEST_DST_SHIFT).astimezone(zone).utcoffset()
    if shift > timedelta(0):
        wall -= shift
    best: datetime | None = None
    while True:
        match = _next_wall_match(crontab, wall)
        if match is None:
            return best
        first, second = _instants(crontab, zone, match)
        if first is not None and best is not None and first >= best:
            return best  # later wall times only give later instants
        for instant in (first, second):
            if instant is not None and instant >= start and (best is None or instant < best):
                best = instant
        wall = match + MINUTE


def _next_wall_match(crontab: Crontab, wall: datetime) -> datetime | None:
    """The first wall-clock minute at or after ``wall`` that the line matches (cronsim, naive)."""
    try:
        return next(CronSim(crontab.engine_text, wall - MINUTE))
    except (StopIteration, CronSimError):  # cronsim gives up after 50 years without a match
        return None


def _instants(crontab: Crontab, zone: ZoneInfo, wall: datetime) -> tuple[datetime | None, datetime | None]:
    """When cron runs a job for a matching wall-clock minute: the DST rule of Debian's cron.c.

    - A normal minute runs once.
    - A minute skipped when clocks go forward runs right after the change (at the first
      minute of the new time) for fixed-time jobs; jobs with ``*`` in minute or hour skip it.
    - A minute repeated when clocks go back runs the first time for every job, and the
      second time only for jobs with ``*`` in minute or hour.

    Returns (first instant, second instant), each in UTC or None.
    """
    first = wall.replace(tzinfo=zone, fold=0)
    if _wall(first, zone) != wall:  # skipped: 02:30 on a spring-forward day
        if crontab.wildcard_time:
            return None, None
        # One reading of the missing wall time falls before the jump: walk from there to it.
        instant = min(first.astimezone(UTC), wall.replace(tzinfo=zone, fold=1).astimezone(UTC))
        while _wall(instant, zone) <= wall:
            instant += MINUTE
        return instant, None
    second = wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset() and crontab.wildcard_time:  # repeated: autumn
        return first.astimezone(UTC), second.astimezone(UTC)
    return first.astimezone(UTC), None


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock time in ``zone`` at ``instant`` (via UTC: a same-zone astimezone is a no-op)."""
    return instant.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
