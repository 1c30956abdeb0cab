"""Jobs stored before issue 11 keep firing, get the crontab trigger, and a changed meaning is shown once."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.triggers.combining import OrTrigger
from sqlalchemy import column, select, table

from app.models import ScheduleConfig
from app.services.crontab import CrontabTrigger
from app.services.leader_scheduler import LeaderScheduler
from app.services.scheduler import SchedulerService
from app.services.schedules import Schedule, WallClockCronTrigger, next_fire_times, save_schedule
from app.services.status import JOBS_TABLE, read_next_run, task_status
from app.services.trigger_migration import read_notice
from tests.settings.html_tree import parse
from tests.support.waiting import wait_for

TASK = "backup_db"
BERLIN = ZoneInfo("Europe/Berlin")


def old_cron_trigger(zone: ZoneInfo, **fields):
    """What the code before issue 11 stored for a cron line with one restricted day field."""
    return WallClockCronTrigger(timezone=zone, once_per_wall_time=True, **fields)


def store_old_job(db, schedule: Schedule, trigger) -> datetime:
    """A schedule row already applied, and its job pickled with an old trigger (as an upgrade finds them)."""
    save_schedule(db, TASK, schedule)
    with db.writer() as session:
        row = session.get(ScheduleConfig, TASK)
        row.applied_version = row.version
    scheduler = LeaderScheduler(jobstores={"default": SQLAlchemyJobStore(engine=db.engine, tablename=JOBS_TABLE)})
    scheduler.start(paused=True)
    try:
        job = scheduler.add_job("app.tasks:scheduled_backup_job", trigger, id=TASK, name="Backup")
        return job.next_run_time
    finally:
        scheduler.shutdown(wait=False)


def stored_trigger(db):
    jobs = table(JOBS_TABLE, column("id"), column("job_state"))
    with db.session() as session:
        state = session.execute(select(jobs.c.job_state).where(jobs.c.id == TASK)).scalar_one()
    return pickle.loads(state)["trigger"]


@pytest.fixture
def leader(app):
    services = []

    def start(**config):
        service = SchedulerService({**app.config, **config}, app.extensions["db"])
        services.append(service)
        service.start()
        wait_for(lambda: service.is_leader, 5)
        return service

    yield start
    for service in services:
        service.stop()


def test_old_or_trigger_still_unpickles_and_is_replaced_with_a_notice_of_the_new_runs(app, db, client, leader):
    # "0 0 */2 * 1" was "odd days OR Mondays"; cron runs it on odd days that are Mondays.
    old = OrTrigger(
        [
            old_cron_trigger(BERLIN, minute="0", hour="0", day="*/2"),
            old_cron_trigger(BERLIN, minute="0", hour="0", day_of_week="mon"),
        ]
    )
    old_next = store_old_job(db, Schedule("cron", cron="0 0 */2 * 1"), old)
    assert isinstance(stored_trigger(db), OrTrigger)  # the old pickle still loads

    leader()
    wait_for(lambda: isinstance(stored_trigger(db), CrontabTrigger), 5)
    wait_for(lambda: read_notice(db, TASK) is not None, 5)  # written just after the trigger is stored

    expected = next_fire_times(CrontabTrigger("0 0 */2 * 1", BERLIN), 5, old_next)
    assert read_next_run(db, TASK) == expected[0]
    assert all(
        moment.astimezone(BERLIN).strftime("%a") == "Mon" and moment.astimezone(BERLIN).day % 2 for moment in expected
    )
    notice = read_notice(db, TASK)
    assert notice.after == expected
    assert notice.before == next_fire_times(old, 5, old_next)
    assert notice.before != notice.after

    status = parse(client.get("/settings/schedule/status").get_data(as_text=True))
    shown = status.by_id("schedule-notice-backup_db")
    assert "Debian" in shown.text
    assert len(shown.find_all("time")) == 10
    api = client.get("/api/v1/settings/scheduler").get_json()
    assert len(api["jobs"][0]["notice"]["runs_after"]) == 5

    save_schedule(db, TASK, Schedule("cron", cron="0 0 */2 * 1"))  # saving, even unchanged, hides it
    assert read_notice(db, TASK) is None
    assert task_status(app.config, db, TASK).notice is None


def test_old_daily_trigger_whose_runs_do_not_change_is_replaced_silently(db, leader):
    utc = ZoneInfo("UTC")
    old_next = store_old_job(db, Schedule("daily", time="02:30"), old_cron_trigger(utc, minute=30, hour=2))

    leader(SCHEDULER_TIMEZONE="UTC")
    wait_for(lambda: isinstance(stored_trigger(db), CrontabTrigger), 5)

    assert stored_trigger(db).expression == "30 2 * * *"
    assert read_next_run(db, TASK) == old_next  # the pending fire time is kept
    assert read_notice(db, TASK) is None


def test_stored_cron_line_that_cron_never_runs_is_unscheduled_with_a_notice(db, leader):
    old = OrTrigger(
        [
            old_cron_trigger(BERLIN, minute="0", hour="0", day="31", month="2"),
            old_cron_trigger(BERLIN, minute="0", hour="0", month="2", day_of_week="sun,tue,thu,sat"),
        ]
    )
    store_old_job(db, Schedule("cron", cron="0 0 31 2 */2"), old)

    leader()
    wait_for(lambda: read_notice(db, TASK) is not None, 5)

    assert read_next_run(db, TASK) is None
    notice = read_notice(db, TASK)
    assert "matches no date" in notice.message
    assert notice.after == []
    assert datetime.now(UTC) < notice.before[0]


def test_a_job_stored_with_the_stage_one_entry_point_keeps_its_fire_time_and_gets_the_one_entry_point(app, db):
    """Old job rows name app.tasks:scheduled_backup_job (the shim); the leader moves them over."""
    from app.services.scheduler import ENTRY_POINT
    from app.services.schedules import build_trigger
    from app.services.status import read_next_run

    save_schedule(db, TASK, Schedule("cron", cron="0 3 * * *"))
    with db.writer() as session:
        row = session.get(ScheduleConfig, TASK)
        row.applied_version = row.version
    scheduler = LeaderScheduler(jobstores={"default": SQLAlchemyJobStore(engine=db.engine, tablename=JOBS_TABLE)})
    scheduler.start(paused=True)
    try:
        trigger = build_trigger(Schedule("cron", cron="0 3 * * *"), "Europe/Berlin")
        scheduler.add_job("app.tasks:scheduled_backup_job", trigger, id=TASK, name="Backup")
    finally:
        scheduler.shutdown(wait=False)
    pending = read_next_run(db, TASK)

    service = app.extensions["scheduler"]
    service.start()
    try:
        wait_for(lambda: service.is_leader, 10)
        job = wait_for(
            lambda: (j := service._scheduler.get_job(TASK)) is not None and j.func_ref == ENTRY_POINT and j, 10
        )
        assert list(job.args) == [TASK]
        assert read_next_run(db, TASK) == pending
    finally:
        service.stop()


def test_the_stage_one_entry_point_still_runs_the_backup_task(app, db, monkeypatch):
    import app.services.scheduler as scheduler_module
    from app.tasks import scheduled_backup_job

    called = []
    monkeypatch.setattr(scheduler_module, "run_scheduled_task", called.append)
    scheduled_backup_job()
    assert called == [TASK]
