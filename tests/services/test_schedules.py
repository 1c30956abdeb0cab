"""Schedules -> triggers: wall-clock modes, crontab quirks, DST, descriptions."""

from __future__ import annotations

import itertools
import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.services.schedules import Schedule, ScheduleError, build_trigger, describe, next_fire_times

BERLIN = ZoneInfo("Europe/Berlin")


def fires(schedule: Schedule, start: datetime, count: int, zone: str = "Europe/Berlin") -> list[datetime]:
    return next_fire_times(build_trigger(schedule, zone), count, start)


def local(moments: list[datetime]) -> list[str]:
    return [moment.astimezone(BERLIN).strftime("%a %Y-%m-%d %H:%M %Z") for moment in moments]


def runs_per_day(moments: list[datetime]) -> dict[str, int]:
    days: dict[str, int] = {}
    for moment in moments:
        day = moment.astimezone(BERLIN).strftime("%Y-%m-%d")
        days[day] = days.get(day, 0) + 1
    return days


def test_daily_fires_at_the_wall_clock_time_in_the_configured_zone():
    moments = fires(Schedule("daily", time="02:30"), datetime(2026, 1, 10, tzinfo=UTC), 3)
    assert local(moments) == [
        "Sat 2026-01-10 02:30 CET",
        "Sun 2026-01-11 02:30 CET",
        "Mon 2026-01-12 02:30 CET",
    ]


def test_daily_0230_berlin_runs_once_on_the_spring_forward_day():
    moments = fires(Schedule("daily", time="02:30"), datetime(2026, 3, 27, tzinfo=UTC), 4)
    assert runs_per_day(moments) == {"2026-03-27": 1, "2026-03-28": 1, "2026-03-29": 1, "2026-03-30": 1}
    # 02:30 does not exist on 29 March: like cron, the run happens right after the change.
    spring = next(m for m in moments if m.astimezone(BERLIN).day == 29)
    assert spring.astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"


def test_daily_0230_berlin_runs_once_on_the_fall_back_day():
    moments = fires(Schedule("daily", time="02:30"), datetime(2026, 10, 23, tzinfo=UTC), 4)
    assert runs_per_day(moments) == {"2026-10-23": 1, "2026-10-24": 1, "2026-10-25": 1, "2026-10-26": 1}
    autumn = next(m for m in moments if m.astimezone(BERLIN).day == 25)
    assert autumn.astimezone(BERLIN).strftime("%H:%M %Z") == "02:30 CEST"  # the first of the two


def test_weekly_and_fixed_hour_cron_also_run_once_when_clocks_go_back():
    weekly = fires(Schedule("weekly", time="02:30", weekdays=("sun",)), datetime(2026, 10, 20, tzinfo=UTC), 2)
    assert local(weekly) == ["Sun 2026-10-25 02:30 CEST", "Sun 2026-11-01 02:30 CET"]
    cron = fires(Schedule("cron", cron="30 2 * * *"), datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert runs_per_day(cron) == {"2026-10-25": 1, "2026-10-26": 1}


def test_hourly_cron_keeps_running_every_real_hour_through_the_repeated_hour():
    moments = fires(Schedule("cron", cron="30 * * * *"), datetime(2026, 10, 24, 23, 0, tzinfo=UTC), 4)
    assert local(moments) == [
        "Sun 2026-10-25 01:30 CEST",
        "Sun 2026-10-25 02:30 CEST",
        "Sun 2026-10-25 02:30 CET",
        "Sun 2026-10-25 03:30 CET",
    ]


def test_wall_clock_trigger_survives_the_job_store_pickle():
    trigger = build_trigger(Schedule("daily", time="02:30"), "Europe/Berlin")
    restored = pickle.loads(pickle.dumps(trigger))
    start = datetime(2026, 10, 24, tzinfo=UTC)
    assert next_fire_times(restored, 3, start) == next_fire_times(trigger, 3, start)


def test_interval_counts_elapsed_hours_across_dst():
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    trigger = build_trigger(Schedule("interval", every_hours=6), "Europe/Berlin", start_date=start)
    moments = next_fire_times(trigger, 3, start)
    utc = [moment.astimezone(UTC) for moment in moments]
    assert [b - a for a, b in itertools.pairwise(utc)] == [timedelta(hours=6)] * 2


@pytest.mark.parametrize(
    ("expression", "weekday"),
    [("0 3 * * 0", "Sun"), ("0 3 * * 7", "Sun"), ("0 3 * * 1", "Mon"), ("0 3 * * sun", "Sun"), ("0 3 * * 6", "Sat")],
)
def test_crontab_weekday_numbers_mean_what_crontab_means(expression, weekday):
    moments = fires(Schedule("cron", cron=expression), datetime(2026, 1, 1, tzinfo=UTC), 3)
    assert {m.astimezone(BERLIN).strftime("%a") for m in moments} == {weekday}


def test_crontab_weekday_step_counts_from_sunday():
    moments = fires(Schedule("cron", cron="0 3 * * */2"), datetime(2026, 1, 4, tzinfo=UTC), 4)
    assert [m.astimezone(BERLIN).strftime("%a") for m in moments] == ["Sun", "Tue", "Thu", "Sat"]


def test_crontab_day_of_month_or_weekday_runs_on_either():
    moments = fires(Schedule("cron", cron="0 0 1 * mon"), datetime(2026, 11, 28, tzinfo=UTC), 3)
    assert local(moments) == ["Mon 2026-11-30 00:00 CET", "Tue 2026-12-01 00:00 CET", "Mon 2026-12-07 00:00 CET"]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute"),
        ("0 24 * * *", "hour"),
        ("0 0 32 * *", "day-of-month"),
        ("0 0 * 13 *", "month"),
        ("0 0 * * 8", "weekday"),
        ("* * * *", "5 fields"),
        ("* * * * * *", "5 fields"),
        ("0 0 * * sat-mon", "start is after the end"),
    ],
)
def test_invalid_cron_names_the_bad_field(expression, message):
    with pytest.raises(ScheduleError, match=message):
        build_trigger(Schedule("cron", cron=expression), "UTC")


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (Schedule("daily", time="24:00"), "hour"),
        (Schedule("daily", time="12:60"), "minutes"),
        (Schedule("daily", time="noon"), "HH:MM"),
        (Schedule("weekly", time="02:00"), "weekday"),
        (Schedule("interval", every_hours=0), "1 to 168"),
        (Schedule("interval", every_hours=169), "1 to 168"),
        (Schedule("hourly"), "Unknown strategy"),
    ],
)
def test_invalid_schedules_are_refused(schedule, message):
    with pytest.raises(ScheduleError, match=message):
        build_trigger(schedule, "UTC")


def test_disabled_schedule_has_no_trigger():
    assert build_trigger(Schedule("disabled"), "UTC") is None


@pytest.mark.parametrize(
    ("schedule", "text"),
    [
        (Schedule("daily", time="02:30"), "Every day at 02:30"),
        (Schedule("weekly", time="03:15", weekdays=("thu", "mon")), "Every Monday and Thursday at 03:15"),
        (Schedule("cron", cron="30 2 * * 1-5"), "At 02:30, Monday through Friday"),
        (Schedule("interval", every_hours=1), "Every hour"),
        (Schedule("interval", every_hours=6), "Every 6 hours"),
        (Schedule("disabled"), "No automatic backups."),
    ],
)
def test_description_is_plain_english(schedule, text):
    assert describe(schedule) == text


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        # AND (a field starts with "*"): the text must not say "or".
        ("0 0 */2 * 1", "At 00:00, every 2 days, but only those days that fall on Monday"),
        # OR (both restricted): the text says either is enough.
        ("0 0 1 * mon", "At 00:00, on day 1 of the month, and also on Monday (either day rule is enough)"),
        (
            "0 0 1,15 * 1-5",
            "At 00:00, on day 1 and 15 of the month, and also on Monday to Friday (either day rule is enough)",
        ),
        ("0 0 1-31 * mon", "At 00:00"),  # OR with every day of the month: every day
        ("0 0 */1 * mon", "At 00:00, only on Monday"),  # AND with every day: just Mondays
        ("0 */24 * * *", "At 00:00"),  # not "every 24 hours": a step past the range is its start
        ("10-20/15 * * * *", "At 10 minutes past the hour"),
        ("0 0 * * 0,7", "At 00:00, only on Sunday"),
        ("0 0 * * 5-7", "At 00:00, Friday through Sunday"),
        ("0 0 * * */2", "At 00:00, only on Tuesday, Thursday, Saturday, and Sunday"),
        ("5 2 * * 01", "At 02:05, only on Monday"),
    ],
)
def test_cron_description_describes_the_runs_that_fire(expression, text):
    assert describe(Schedule("cron", cron=expression)) == text


def test_normalized_drops_other_strategies_fields():
    mixed = Schedule("weekly", time="03:15", weekdays=("thu", "mon"), cron="* * * * *", every_hours=4)
    assert mixed.normalized() == Schedule("weekly", time="03:15", weekdays=("mon", "thu"))
    assert mixed.normalized().as_dict() == {"mode": "weekly", "time": "03:15", "weekdays": ["mon", "thu"]}


def test_fixed_hour_cron_with_several_minutes_runs_each_once_when_clocks_go_back():
    moments = fires(Schedule("cron", cron="0,30 2 * * *"), datetime(2026, 10, 24, 12, tzinfo=UTC), 4)
    assert local(moments) == [
        "Sun 2026-10-25 02:00 CEST",
        "Sun 2026-10-25 02:30 CEST",
        "Mon 2026-10-26 02:00 CET",
        "Mon 2026-10-26 02:30 CET",
    ]


# Debian cron(8), "Daylight Saving Time": fixed-time jobs in a skipped interval run right
# after the change; fixed-time jobs in a repeated interval run once; jobs with "*" in the
# minute or hour field follow the new time at once (skipped minutes are skipped, repeated
# ones run again). Berlin changes at 02:00/03:00, New York at 02:00/01:00, on other days.
DST_CASES = [
    # (zone, schedule, start (UTC), expected local runs)
    (
        "Europe/Berlin",
        Schedule("cron", cron="30 2 * * *"),
        datetime(2026, 3, 28, 12, tzinfo=UTC),
        ["03-29 03:00 CEST", "03-30 02:30 CEST"],
    ),
    (
        "Europe/Berlin",
        Schedule("cron", cron="*/20 2 * * *"),  # a wildcard minute in the skipped hour: none that day
        datetime(2026, 3, 28, 12, tzinfo=UTC),
        ["03-30 02:00 CEST", "03-30 02:20 CEST"],
    ),
    (
        "Europe/Berlin",
        Schedule("cron", cron="30 2 * * *"),
        datetime(2026, 10, 24, 12, tzinfo=UTC),
        ["10-25 02:30 CEST", "10-26 02:30 CET"],
    ),
    (
        "Europe/Berlin",
        Schedule("cron", cron="*/20 2 * * *"),  # runs again in the repeated hour
        datetime(2026, 10, 24, 23, 30, tzinfo=UTC),
        ["10-25 02:00 CEST", "10-25 02:20 CEST", "10-25 02:40 CEST", "10-25 02:00 CET", "10-25 02:20 CET"],
    ),
    (
        "America/New_York",
        Schedule("cron", cron="15 2 * * *"),
        datetime(2026, 3, 7, 12, tzinfo=UTC),
        ["03-08 03:00 EDT", "03-09 02:15 EDT"],
    ),
    (
        "America/New_York",
        Schedule("cron", cron="15 * * * *"),  # a wildcard hour: 02:15 does not exist, 03:15 does
        datetime(2026, 3, 8, 6, 0, tzinfo=UTC),
        ["03-08 01:15 EST", "03-08 03:15 EDT", "03-08 04:15 EDT"],
    ),
    (
        "America/New_York",
        Schedule("cron", cron="15 1 * * *"),
        datetime(2026, 10, 31, 12, tzinfo=UTC),
        ["11-01 01:15 EDT", "11-02 01:15 EST"],
    ),
    (
        "America/New_York",
        Schedule("cron", cron="15 * * * *"),
        datetime(2026, 11, 1, 4, 30, tzinfo=UTC),
        ["11-01 01:15 EDT", "11-01 01:15 EST", "11-01 02:15 EST"],
    ),
    (
        "America/New_York",
        Schedule("weekly", time="01:30", weekdays=("sun",)),  # daily and weekly follow the same rule
        datetime(2026, 10, 31, 12, tzinfo=UTC),
        ["11-01 01:30 EDT", "11-08 01:30 EST"],
    ),
    (
        "America/New_York",
        Schedule("daily", time="02:59"),
        datetime(2026, 3, 7, 12, tzinfo=UTC),
        ["03-08 03:00 EDT", "03-09 02:59 EDT"],
    ),
]


@pytest.mark.parametrize(("zone", "schedule", "start", "expected"), DST_CASES)
def test_dst_changes_follow_debian_cron(zone, schedule, start, expected):
    moments = next_fire_times(build_trigger(schedule, zone), len(expected), start)
    assert [m.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M %Z") for m in moments] == expected


def test_autumn_next_runs_list_is_complete_around_the_repeated_hour():
    # Issue 11: "30 * 31 10 *" listed 3 runs instead of 5 around the change.
    moments = fires(Schedule("cron", cron="30 * 25 10 *"), datetime(2026, 10, 24, 23, 0, tzinfo=UTC), 5)
    assert local(moments) == [
        "Sun 2026-10-25 01:30 CEST",
        "Sun 2026-10-25 02:30 CEST",
        "Sun 2026-10-25 02:30 CET",
        "Sun 2026-10-25 03:30 CET",
        "Sun 2026-10-25 04:30 CET",
    ]


def test_next_run_asked_inside_the_repeated_hour_is_not_the_hour_already_run():
    trigger = build_trigger(Schedule("cron", cron="30 2 * * *"), "Europe/Berlin")
    inside = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET, the second pass
    assert local([trigger.get_next_fire_time(None, inside)]) == ["Mon 2026-10-26 02:30 CET"]


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        # Either day field starting with "*" means AND: odd days that are Mondays.
        ("0 0 */2 * 1", datetime(2026, 1, 1, tzinfo=UTC), ["Mon 2026-01-05", "Mon 2026-01-19", "Mon 2026-02-09"]),
        # Both restricted: OR.
        ("0 0 1 * mon", datetime(2026, 11, 28, tzinfo=UTC), ["Mon 2026-11-30", "Tue 2026-12-01", "Mon 2026-12-07"]),
        ("0 0 */24 * *", datetime(2026, 1, 1, tzinfo=UTC), ["Thu 2026-01-01", "Sun 2026-01-25", "Sun 2026-02-01"]),
        ("0 0 * * 01", datetime(2026, 1, 1, tzinfo=UTC), ["Mon 2026-01-05", "Mon 2026-01-12", "Mon 2026-01-19"]),
        ("0 0 1 jan-dec/5 *", datetime(2026, 1, 2, tzinfo=UTC), ["Mon 2026-06-01", "Sun 2026-11-01", "Fri 2027-01-01"]),
        ("0 0 29 2 *", datetime(2026, 1, 1, tzinfo=UTC), ["Tue 2028-02-29", "Sun 2032-02-29", "Fri 2036-02-29"]),
    ],
)
def test_crontab_days_mean_what_debian_cron_runs(expression, start, expected):
    moments = next_fire_times(build_trigger(Schedule("cron", cron=expression), "UTC"), 3, start)
    assert [m.strftime("%a %Y-%m-%d") for m in moments] == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 31 2 */2", "matches no date"),
        ("0 0 30 2 *", "matches no date"),
        ("0 0 last * *", "day-of-month field 'last'"),
        ("0 0 * jan2 *", "month field 'jan2'"),
        ("0 0 L * *", "day-of-month"),
        ("0 0 * * 1#2", "weekday"),
        ("@daily", "0 0 * * *"),
        ("1/20 * * * *", "a step needs a range"),
        ("0 0 * * ١", "weekday"),
        ("٣٠ 2 * * *", "minute"),
    ],
)
def test_what_cron_refuses_is_refused_with_the_field_named(expression, message):
    with pytest.raises(ScheduleError, match=message):
        build_trigger(Schedule("cron", cron=expression), "UTC")


def test_crontab_trigger_pickles_small_holding_only_expression_and_zone():
    trigger = build_trigger(Schedule("cron", cron="0 0 */2 * 1"), "America/New_York")
    data = pickle.dumps(trigger)
    restored = pickle.loads(data)
    assert len(data) < 300
    assert restored.__getstate__() == {"version": 1, "expression": "0 0 */2 * 1", "timezone": "America/New_York"}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert next_fire_times(restored, 5, start) == next_fire_times(trigger, 5, start)
