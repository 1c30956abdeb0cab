"""A brute-force model of Debian's cron, to check the product against (never uses cronsim).

It follows cron 3.0pl1 as Debian ships it:

- ``parse`` is entry.c: ``get_list`` -> ``get_range`` -> ``get_number`` per field, each field
  a set of values, and the ``*_STAR`` flags set when a field's first character is ``*``.
- ``matches`` is the test in cron.c ``find_jobs``: day-of-month and weekday are AND-ed
  when DOM_STAR or DOW_STAR is set, OR-ed otherwise.
- ``run_times`` is cron.c's main loop: every real minute it compares the wall clock
  (``clockTime``) with the minute it has run jobs for (``virtualTime``) and picks one of
  its cases; "wildcard" jobs are those with MIN_STAR or HR_STAR.

It steps minute by minute, only jumping over days, hours and minutes that cannot match
while the clock runs normally (no change of UTC offset on the way).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MINUTE_COUNT = 60


class CronSyntaxError(ValueError):
    """cron's "bad minute", "bad hour", ... errors."""


@dataclass(frozen=True)
class Entry:
    minute: frozenset[int]
    hour: frozenset[int]
    dom: frozenset[int]
    month: frozenset[int]
    dow: frozenset[int]  # 0-7; 0 and 7 both set when either is
    min_star: bool
    hr_star: bool
    dom_star: bool
    dow_star: bool

    @property
    def wildcard(self) -> bool:
        """``e->flags & (MIN_STAR|HR_STAR)``."""
        return self.min_star or self.hr_star


class _Reader:
    """The character stream ``get_char`` reads from."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def get_char(self) -> str:
        char = self.text[self.pos] if self.pos < len(self.text) else ""  # "" is EOF
        self.pos += 1
        return char


def _isalnum(char: str) -> bool:
    return char != "" and char.isascii() and char.isalnum()  # C locale: ASCII only


def _get_number(reader: _Reader, char: str, low: int, names: list[str] | None) -> tuple[int, str]:
    temp = ""
    while _isalnum(char):
        temp += char
        char = reader.get_char()
    if not temp:
        raise CronSyntaxError("number expected")
    if names:
        for index, name in enumerate(names):
            if name == temp.lower():  # strcasecmp
                return index + low, char
    if temp.isdigit():
        return int(temp), char  # atoi
    raise CronSyntaxError(f"bad number or name {temp!r}")


def _get_range(reader: _Reader, char: str, bits: set[int], low: int, high: int, names) -> str:
    if char == "*":
        num1, num2 = low, high
        char = reader.get_char()
    else:
        num1, char = _get_number(reader, char, low, names)
        if char != "-":
            if char == "/":
                raise CronSyntaxError("step without a range")
            if not low <= num1 <= high:
                raise CronSyntaxError("out of range")
            bits.add(num1)
            return char
        char = reader.get_char()
        num2, char = _get_number(reader, char, low, names)
    step = 1
    if char == "/":
        char = reader.get_char()
        step, char = _get_number(reader, char, 0, None)
        if step <= 0:
            raise CronSyntaxError("step must be positive")
    if not (low <= num1 <= high and low <= num2 <= high):
        raise CronSyntaxError("out of range")
    bits.update(range(num1, num2 + 1, step))  # an empty range (num1 > num2) sets nothing
    return char


def _get_list(reader: _Reader, char: str, low: int, high: int, names) -> tuple[frozenset[int], str]:
    bits: set[int] = set()
    while True:
        char = _get_range(reader, char, bits, low, high, names)
        if char != ",":
            break
        char = reader.get_char()
    while char not in ("", " ", "\t"):  # Skip_Nonblanks: cron ignores the rest of the field
        char = reader.get_char()
    while char in (" ", "\t"):  # Skip_Blanks
        char = reader.get_char()
    return frozenset(bits), char


def parse(line: str) -> Entry:
    """entry.c's ``load_entry`` for the five time fields; raises :class:`CronSyntaxError`."""
    reader = _Reader(line.strip())
    char = reader.get_char()
    if char == "@":
        raise CronSyntaxError("macros are not modelled")
    stars = []
    fields = []
    for low, high, names in ((0, 59, None), (0, 23, None), (1, 31, None), (1, 12, MONTH_NAMES), (0, 7, DOW_NAMES)):
        if char == "":
            raise CronSyntaxError("too few fields")
        stars.append(char == "*")
        bits, char = _get_list(reader, char, low, high, names)
        fields.append(bits)
    if char != "":
        raise CronSyntaxError("a command follows (here: a sixth field)")
    dow = set(fields[4])
    if 0 in dow or 7 in dow:
        dow |= {0, 7}
    return Entry(*fields[:4], frozenset(dow), *stars[:3], stars[4])


def matches(entry: Entry, wall: datetime) -> bool:
    """The test in cron.c ``find_jobs`` for one wall-clock minute."""
    dow = (wall.weekday() + 1) % 7  # tm_wday: Sunday is 0
    if entry.dom_star or entry.dow_star:
        day = dow in entry.dow and wall.day in entry.dom
    else:
        day = dow in entry.dow or wall.day in entry.dom
    return wall.minute in entry.minute and wall.hour in entry.hour and wall.month in entry.month and day


def _date_matches(entry: Entry, wall: datetime) -> bool:
    """Whether any minute of this day can match (month and the day rule only)."""
    return matches(entry, wall.replace(hour=min(entry.hour), minute=min(entry.minute)))


def _clock_minutes(instant: datetime, zone: ZoneInfo) -> int:
    """cron's ``clockTime``: minutes since the epoch on the local wall clock."""
    local = instant.astimezone(zone)
    return int((instant.timestamp() + local.utcoffset().total_seconds()) // 60)


def _wall(minutes: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(minutes=minutes)


def run_times(entry: Entry, zone: ZoneInfo, start: datetime, count: int, until: datetime) -> list[datetime]:
    """The real instants (UTC) at which cron starts the job, at or after ``start``, before ``until``.

    An instant appears once per start: cron starts a fixed-time job at 03:00 twice on the
    spring day when it matches 02:00 and 02:30 (both were skipped).
    """
    start = start.astimezone(UTC)
    # Start a few hours early, so that a start inside a repeated hour finds cron's state there.
    instant = start.replace(second=0, microsecond=0) - timedelta(hours=4)
    virtual = _clock_minutes(instant, zone) - 1  # all jobs up to here have run
    found: list[datetime] = []

    def find_jobs(vtime: int, do_wild: bool, do_non_wild: bool) -> None:
        if (do_wild if entry.wildcard else do_non_wild) and instant >= start and matches(entry, _wall(vtime)):
            found.append(instant)  # twice at one instant when several skipped minutes match

    while len(set(found)) < count and instant < until:
        running = _clock_minutes(instant, zone)
        diff = running - virtual
        if diff == 1:
            jump = _quiet_stretch(entry, zone, instant, running)
            if jump:
                instant += jump
                virtual = _clock_minutes(instant, zone) - 1
                continue
            virtual = running
            find_jobs(virtual, True, True)
        elif 0 < diff <= 5:  # woke up a little late: run every missed minute
            while virtual < running:
                virtual += 1
                find_jobs(virtual, True, True)
        elif 5 < diff <= 3 * MINUTE_COUNT:  # clocks went forward: wildcard jobs now, fixed-time jobs caught up
            find_jobs(running, True, False)
            while virtual < running:
                virtual += 1
                find_jobs(virtual, False, True)
        elif -3 * MINUTE_COUNT < diff <= 0:  # clocks went back: only wildcard jobs until caught up
            find_jobs(running, True, False)
        else:  # the time changed a lot: start over from now
            virtual = running
            find_jobs(running, True, True)
        instant += timedelta(minutes=1)
    return found


def _quiet_stretch(entry: Entry, zone: ZoneInfo, instant: datetime, running: int) -> timedelta | None:
    """How far to jump while the clock runs normally and nothing can match (to the next day, hour or minute)."""
    wall = _wall(running)
    if not _date_matches(entry, wall):
        end = wall.replace(hour=0, minute=0) + timedelta(days=1)
    elif wall.hour not in entry.hour:
        end = wall.replace(minute=0) + timedelta(hours=1)
    elif wall.minute not in entry.minute:
        later = [minute for minute in entry.minute if minute > wall.minute]
        end = wall.replace(minute=min(later)) if later else wall.replace(minute=0) + timedelta(hours=1)
    else:
        return None
    # Only when the clock runs normally all the way: no change of offset on the way.
    if (instant + (end - wall)).astimezone(zone).utcoffset() != instant.astimezone(zone).utcoffset():
        return None
    return end - wall
