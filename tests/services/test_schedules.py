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
