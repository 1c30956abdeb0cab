"""Cron expressions mean what Debian's cron runs: the product against a model of cron's source.

Hundreds of generated expressions (fixed seed), each in three zones from starts that
cross both DST changes, month ends and leap days: the first five fire times of the
trigger that fires jobs (``get_next_fire_time`` as APScheduler calls it) must equal the
five times ``tests/support/debian_cron.py`` (entry.c and cron.c, brute force) gives.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.services.crontab import NEVER_RUNS
from app.services.schedules import Schedule, ScheduleError, build_trigger
from tests.support import debian_cron

SEED = 11
EXPRESSIONS = 300
COUNT = 5
HORIZON = timedelta(days=366 * 12)  # leap-day-and-weekday lines come every 28 years; we look 12 ahead
ZONES = ("UTC", "Europe/Berlin", "America/New_York")
# Starts that make the first five runs cross what goes wrong: both DST changes (each zone
# its own), inside the repeated hour, month ends, a year end, the days before a leap day.
STARTS = {
    "UTC": ["2026-03-29T00:00:00+00:00", "2026-10-25T00:00:00+00:00"],
    "Europe/Berlin": [
        "2026-03-28T23:00:30+01:00",  # the night clocks go forward (02:00 -> 03:00)
        "2026-10-24T23:00:00+02:00",  # the night clocks go back (03:00 -> 02:00)
        "2026-10-25T02:15:00+01:00",  # inside the repeated hour, second pass
    ],
    "America/New_York": [
        "2026-03-07T23:00:00-05:00",  # clocks go forward (02:00 -> 03:00)
        "2026-10-31T23:00:00-04:00",  # clocks go back (02:00 -> 01:00)
        "2026-11-01T01:15:00-05:00",  # inside the repeated hour, second pass
    ],
}
OTHER_STARTS = [
    "2026-01-30T12:00:00+00:00",
    "2026-04-30T22:59:59+00:00",
    "2026-12-31T23:00:00+00:00",
    "2028-02-27T00:00:00+00:00",
    "2027-06-15T08:07:00+00:00",
]

# Disagreements accepted on purpose, each explained in the README ("Cron expressions").
# (expression, zone) -> why. Empty: the product and cron agree on every generated case.
ALLOWED: dict[tuple[str, str], str] = {}


def _number(rng: random.Random, low: int, high: int) -> str:
    value = rng.randint(low, high)
    return f"0{value}" if value < 10 and rng.random() < 0.15 else str(value)  # leading zeros


def _item(rng: random.Random, low: int, high: int, names: list[str] | None, hot: list[int]) -> str:
    def value(lo: int = low) -> str:
        if names and rng.random() < 0.35:
            index = rng.randint(lo, high) - low
            return names[index % len(names)].capitalize() if rng.random() < 0.3 else names[index % len(names)]
        if hot and rng.random() < 0.5:
            return str(max(lo, rng.choice(hot)))
        return _number(rng, lo, high)

    kind = rng.choice(["value", "value", "range", "range-step", "star-step", "start-step"])
    if kind == "value":
        return value()
    first = rng.randint(low, high)
    last = rng.randint(first, high)

    def to_text(number: int) -> str:  # a name, except 7 for Sunday at the end of a weekday range
        return names[number - low] if use_names and number - low < len(names) else str(number)

    use_names = bool(names) and rng.random() < 0.4
    if kind == "range":
        return f"{to_text(first)}-{to_text(last)}"
    step = rng.choice([2, 3, 5, 7, 15, high - low + 5])  # the last one: a step larger than the range
    if kind == "range-step":
        return f"{to_text(first)}-{to_text(last)}/{step}"
    if kind == "star-step":
        return f"*/{step}"
    return f"{first}-{high}/{step}"


def _field(rng: random.Random, low: int, high: int, names=None, hot=(), star=0.4) -> str:
    roll = rng.random()
    if roll < star:
        return "*"
    if roll < star + 0.15:
        return ",".join(_item(rng, low, high, names, list(hot)) for _ in range(rng.randint(2, 3)))
    return _item(rng, low, high, names, list(hot))


def generate(seed: int = SEED, count: int = EXPRESSIONS) -> list[str]:
    """Valid crontab lines covering lists, ranges, steps, names, 0/7, both day fields, month ends."""
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        minute = _field(rng, 0, 59, hot=[0, 30, 59], star=0.2)
        hour = _field(rng, 0, 23, hot=[1, 2, 3], star=0.3)  # 1-3: the DST hours of both zones
        dom = _field(rng, 1, 31, hot=[1, 28, 29, 30, 31], star=0.55)
        month = _field(rng, 1, 12, names=debian_cron.MONTH_NAMES, hot=[2, 3, 10, 11], star=0.6)
        dow = _field(rng, 0, 7, names=debian_cron.DOW_NAMES[:7], hot=[0, 7], star=0.55)
        if rng.random() < 0.1:
            dom = rng.choice(["*/2", "*/3", "*/10"])  # a star-based day field with a restricted weekday
            dow = rng.choice(["1", "mon", "0", "7", "1-5"])
        elif rng.random() < 0.06:
            dom = rng.choice(["29", "28-29", "29,30", "31", "30-31"])  # leap days and month ends
            month = rng.choice(["2", "feb", "02", "1-3", "feb,apr"])
        lines.append(f"{minute} {hour} {dom} {month} {dow}")
    return lines


def product_runs(expression: str, zone: str, start: datetime, until: datetime) -> list[datetime]:
    """Fire times as APScheduler asks for them: first with no previous run, then after each run."""
    trigger = build_trigger(Schedule("cron", cron=expression), zone)
    moments: list[datetime] = []
    upcoming = trigger.get_next_fire_time(None, start)
    while upcoming is not None and upcoming < until and len(moments) < COUNT:
        moments.append(upcoming.astimezone(UTC))
        upcoming = trigger.get_next_fire_time(upcoming, upcoming + timedelta(seconds=1))
    return moments


def reference_runs(expression: str, zone: str, start: datetime, until: datetime) -> list[datetime]:
    starts = debian_cron.run_times(debian_cron.parse(expression), ZoneInfo(zone), start, COUNT, until)
    # The one difference by design (README, "Cron expressions"): where cron starts a job
    # twice at one instant (several skipped minutes matched when clocks went forward), the
    # scheduler runs it once.
    return list(dict.fromkeys(starts))[:COUNT]


def _cases() -> list[tuple[str, str, datetime]]:
    rng = random.Random(SEED + 1)
    cases = []
    for expression in generate():
        for zone in ZONES:
            starts = [rng.choice(STARTS[zone]), rng.choice(OTHER_STARTS)]
            cases.extend((expression, zone, datetime.fromisoformat(start)) for start in starts)
    return cases


def disagreements(cases) -> list[str]:
    found = []
    for expression, zone, start in cases:
        until = start + HORIZON
        expected = reference_runs(expression, zone, start, until)
        try:
            actual = product_runs(expression, zone, start, until)
        except ScheduleError as exc:
            # Refusing a line that matches no date is right when cron never runs it either.
            actual = [] if str(exc) == NEVER_RUNS else f"refused: {exc}"
        if actual != expected and (expression, zone) not in ALLOWED:
            found.append(
                f"{expression!r} in {zone} from {start.isoformat()}: cron {_show(expected, zone)}, us {actual}"
            )
    return found


def _show(moments, zone: str) -> list[str]:
    return [moment.astimezone(ZoneInfo(zone)).isoformat() for moment in moments]


def test_generated_expressions_cover_what_goes_wrong():
    lines = generate()
    assert len(set(lines)) > 250
    fields = [line.split() for line in lines]
    assert sum(1 for f in fields if not f[2].startswith("*") and not f[4].startswith("*")) > 20  # OR of the days
    assert sum(1 for f in fields if f[2].startswith("*/") and f[4] != "*") > 10  # AND with a star-based day
    assert any("/" in f[1] and int(f[1].split("/")[1]) > 23 for f in fields)  # a step larger than the range
    assert any(any(item.startswith("0") and len(item) == 2 for item in f[4].split(",")) for f in fields)
    assert any("7" in f[4] for f in fields) and any(f[4] == "0" or ",0" in f[4] for f in fields)
    assert any(name in f[3].lower() and "/" in f[3] for f in fields for name in debian_cron.MONTH_NAMES)
    assert sum(1 for f in fields if "29" in f[2] and f[3] in ("2", "feb", "02")) >= 3  # leap days


def test_first_five_runs_match_debian_cron_in_three_zones_across_dst():
    found = disagreements(_cases())
    assert not found, f"{len(found)} disagreements, e.g.:\n" + "\n".join(found[:15])


# Lines that the product and cron must both accept or both refuse. The product refuses
# three kinds that cron takes (ACCEPTANCE_ALLOWED); README "Cron expressions" says why.
ACCEPTANCE = [
    "5 2 * * 01",
    "0 */24 * * *",
    "10-20/15 * * * *",
    "0 0 * jan-dec/2 *",
    "0 0 * JAN-Mar/2 Mon-FRI/2",
    "0 0 * * 0,7",
    "0 0 * * 1-7/2",
    "0 0 * * mon-7",
    "00 000 01 01 00",
    "*/1 * * * *",
    "0 0 jan2 * *",
    "0 0 * jan2 *",
    "0 0 last * *",
    "0 0 L * *",
    "0 0 ? * *",
    "0 0 * * 1#2",
    "0 0 * * 5L",
    "0 0 15W * *",
    "1/20 * * * *",
    "*/0 * * * *",
    "60 * * * *",
    "0 24 * * *",
    "0 0 0 * *",
    "0 0 * 13 *",
    "0 0 * * 8",
    "0 0 * * monday",
    "0 0 * * 1,",
    "0 0 1-,2 * *",
    "٣ * * * *",
    "0 0 * * ١",
    "0 0 1 1",
    "0 0 1 1 * *",
    "@daily",
    "5! * * * *",
    "*-5 * * * *",
    "*/2/3 * * * *",
    "0 0 * * fri-sun",
    "0 0 5-1 * *",
    "0 0 31 2 *",
    "0 0 31 2 */2",
]
ACCEPTANCE_ALLOWED = {
    "5! * * * *": "cron ignores the rest of a field after a valid item; we call it a typo",
    "*-5 * * * *": "the same: cron reads '*' and skips '-5'",
    "*/2/3 * * * *": "the same: cron reads '*/2' and skips '/3'",
    "0 0 * * 1#2": "the same: cron reads every Monday, not Quartz's second Monday",
    "0 0 * * fri-sun": "cron accepts a reversed range but it matches nothing; we say so",
    "0 0 5-1 * *": "the same",
    "0 0 31 2 *": "cron accepts a date that never comes; we say it never runs",
    "0 0 31 2 */2": "the same (the day fields are AND-ed: 31 February)",
}


@pytest.mark.parametrize("expression", ACCEPTANCE)
def test_what_cron_accepts_we_accept_and_what_it_refuses_we_refuse(expression):
    try:
        debian_cron.parse(expression)
        cron_accepts = True
    except debian_cron.CronSyntaxError:
        cron_accepts = False
    try:
        build_trigger(Schedule("cron", cron=expression), "UTC")
        we_accept = True
    except ScheduleError:
        we_accept = False
    if expression in ACCEPTANCE_ALLOWED:
        assert (cron_accepts, we_accept) == (True, False)
    else:
        assert we_accept == cron_accepts
