"""The scheduler service in one process: leader election, reconcile, catch-up, missed runs.

Several SchedulerService instances on one database behave like several workers: each
opens its own lock file description, so ``flock`` lets only one of them lead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import select

from app.models import JobRun, ScheduleConfig, SchedulerState, utcnow
from app.services import runs
from app.services.backups import list_backups
from app.services.leader_scheduler import LeaderScheduler
from app.services.scheduler import SchedulerService
from app.services.schedules import Schedule, save_schedule
from app.services.status import JOBS_TABLE, read_next_run, task_status
from tests.support.waiting import wait_for

TASK = "backup_db"


@pytest.fixture
def services(app):
    """Make extra SchedulerService instances on the app's database ("other workers").

    Followers retry the lock every 0.2 s (not 3 s); the leader keeps its default tick.
    """
    made = []

    def factory(**config):
        settings = {**app.config, "SCHEDULER_FOLLOWER_RETRY_SECONDS": 0.2, **config}
        service = SchedulerService(settings, app.extensions["db"])
        made.append(service)
        return service

    yield factory
    for service in made:
        service.stop()


def set_next_run_time(db, job_id: str, when) -> None:
    """Move a stored job's next fire time, as if the app had been down since ``when``."""
    scheduler = LeaderScheduler(jobstores={"default": SQLAlchemyJobStore(engine=db.engine, tablename=JOBS_TABLE)})
    scheduler.start(paused=True)
    try:
        scheduler.modify_job(job_id, next_run_time=when)
    finally:
        scheduler.shutdown(wait=False)


def count_calls(obj, name: str) -> list:
    """Record each call of ``obj.name`` (its results, in order) without changing it."""
    calls = []
    original = getattr(obj, name)

    def counted(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(result)
        return result

    setattr(obj, name, counted)
    return calls


def heartbeat_of(db, service) -> SchedulerState | None:
    """The heartbeat row once ``service`` wrote it (its first is written after its first reconcile)."""
    with db.session() as session:
        state = session.get(SchedulerState, 1)
    return state if state is not None and state.started_at == service.leader_started_at else None


def all_runs(db) -> list[JobRun]:
    with db.session() as session:
        return list(session.scalars(select(JobRun).order_by(JobRun.id)))


def test_only_one_service_leads_and_another_takes_over_when_it_stops(services):
    first, second = services(), services()
    first.start()
    wait_for(lambda: first.is_leader, 5)
    attempts = count_calls(second._lock, "try_acquire")
    second.start()
    wait_for(lambda: len(attempts) >= 3, 5)  # it tried, and was refused, three times
    assert attempts[:3] == [False] * 3
    assert not second.is_leader

    first.stop()
    wait_for(lambda: second.is_leader, 2)
    assert not first.is_leader


def test_leader_lock_is_freed_when_the_leading_process_is_killed(app, services):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX);"
            " print('locked', flush=True); time.sleep(60)",
            app.config["STATE_DATABASE_PATH"] + ".scheduler.lock",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        service = services()
        attempts = count_calls(service._lock, "try_acquire")
        service.start()
        wait_for(lambda: len(attempts) >= 2, 5)
        assert not service.is_leader
        holder.kill()
        holder.wait()
        wait_for(lambda: service.is_leader, 2)
    finally:
        holder.kill()


def test_disabled_scheduler_never_starts(services):
    service = services(SCHEDULER_ENABLED=False)
    assert service.start() is False
    assert service._thread is None  # nothing competes for the lock
    assert not service.is_leader


def test_schedule_saved_anywhere_is_applied_by_the_leader_within_two_seconds(db, services):
    leader = services()
    leader.start()
    wait_for(lambda: leader.is_leader, 5)
    assert read_next_run(db, TASK) is None

    save_schedule(db, TASK, Schedule("daily", time="03:15"))
    started = time.monotonic()
    next_run = wait_for(lambda: read_next_run(db, TASK), 3, interval=0.05)
    assert time.monotonic() - started < 2.5
    local = next_run.astimezone(leader_zone(leader))
    assert (local.hour, local.minute) == (3, 15)
    wait_for(lambda: applied(db), 1)  # the job is stored first, then its version is marked applied

    save_schedule(db, TASK, Schedule("disabled"))
    wait_for(lambda: read_next_run(db, TASK) is None and not job_stored(db), 3)


def applied(db) -> bool:
    with db.session() as session:
        row = session.get(ScheduleConfig, TASK)
    return row.applied_version == row.version


def leader_zone(service):
    return ZoneInfo(service.timezone)


def job_stored(db) -> bool:
    from app.services.status import stored_jobs

    return any(job_id == TASK for job_id, _ in stored_jobs(db))


def test_restart_keeps_interval_timing_and_saving_the_same_schedule_changes_nothing(db, services):
    first = services()
    save_schedule(db, TASK, Schedule("interval", every_hours=6))
    first.start()
    before = wait_for(lambda: read_next_run(db, TASK), 5)
    first.stop()

    time.sleep(1.2)  # real clock under test: a re-added interval job would start counting again from now
    second = services()
    reconciled = count_calls(second, "reconcile")
    second.start()
    wait_for(lambda: heartbeat_of(db, second), 5)  # written after its first reconcile
    assert reconciled[0] == []
    assert read_next_run(db, TASK) == before

    with db.session() as session:
        version = session.get(ScheduleConfig, TASK).version
    save_schedule(db, TASK, Schedule("interval", every_hours=6))
    seen = len(reconciled)
    wait_for(lambda: len(reconciled) >= seen + 2, 5)  # two more leader ticks
    assert reconciled[seen:] == [[], []]
    with db.session() as session:
        assert session.get(ScheduleConfig, TASK).version == version
    assert read_next_run(db, TASK) == before


def test_fire_time_missed_while_down_runs_once_as_catch_up(app, db, services):
    save_schedule(db, TASK, Schedule("cron", cron="* * * * *"))
    first = services()
    first.start()
    wait_for(lambda: read_next_run(db, TASK), 5)
    first.stop()
    # Down for three minutes: three fire times passed; coalescing makes them one run.
    missed_since = (utcnow() - timedelta(minutes=3)).replace(second=0, microsecond=0)
    set_next_run_time(db, TASK, missed_since)

    second = services()
    second.start()
    run = wait_for(lambda: runs.latest_run(db, TASK, status="success"), 10)
    time.sleep(1)  # real clock under test: a second catch-up run would have started by now
    finished = [r for r in all_runs(db) if r.status != "running"]
    assert [r.trigger for r in finished if r.trigger == "catch-up"] == ["catch-up"]
    # A minute boundary may pass while the test runs: that run is punctual, not another catch-up.
    assert all(r.scheduled_for >= second.leader_started_at for r in finished if r.trigger != "catch-up")
    assert run.scheduled_for > missed_since  # the latest missed fire time, not the first
    assert run.scheduled_for < second.leader_started_at
    assert os.path.exists(os.path.join(app.config["BACKUPS_DIR"], run.file))
    assert read_next_run(db, TASK) > utcnow()


def test_fire_time_missed_beyond_the_grace_is_recorded_not_silently_dropped(app, db, services):
    # A daily run due five minutes ago, while the app was down; the grace is 30 s.
    due = (utcnow() - timedelta(minutes=5)).replace(second=0, microsecond=0)
    local_due = due.astimezone(ZoneInfo(app.config["SCHEDULER_TIMEZONE"]))
    save_schedule(db, TASK, Schedule("daily", time=local_due.strftime("%H:%M")))
    first = services(SCHEDULER_MISFIRE_GRACE_SECONDS=30)
    first.start()
    wait_for(lambda: read_next_run(db, TASK), 5)
    first.stop()
    set_next_run_time(db, TASK, due)

    second = services(SCHEDULER_MISFIRE_GRACE_SECONDS=30)
    second.start()
    missed = wait_for(lambda: runs.latest_run(db, TASK, status="missed"), 10)
    assert "catch-up window" in missed.error
    assert missed.scheduled_for == due
    assert runs.latest_run(db, TASK, status="success") is None
    assert list_backups(Path(app.config["BACKUPS_DIR"])) == []
    assert read_next_run(db, TASK) > utcnow() + timedelta(hours=23)


def test_run_left_running_by_a_dead_process_becomes_interrupted_at_leader_start(db, services):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with db.writer() as session:
        session.add(JobRun(task=TASK, trigger="scheduled", status="running", pid=dead.pid, phase="copying"))
    leader = services()
    leader.start()
    wait_for(lambda: leader.is_leader, 5)
    run = wait_for(lambda: runs.latest_run(db, TASK, status="interrupted"), 5)
    assert run.finished_at is not None
    assert runs.latest_run(db, TASK, status="running") is None


def test_status_reports_the_scheduler_down_when_the_heartbeat_is_stale(app, db, services):
    leader = services()
    leader.start()
    wait_for(lambda: task_status(app.config, db, TASK).health.running, 5)
    leader.stop()
    with db.writer() as session:
        session.get(SchedulerState, 1).heartbeat_at = utcnow() - timedelta(seconds=60)
    health = task_status(app.config, db, TASK).health
    assert health.enabled and not health.running


def test_run_skipped_because_the_previous_one_is_still_going_is_recorded(app, db, services):
    from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent

    due = utcnow().replace(microsecond=0)
    services()._on_skipped(JobSubmissionEvent(EVENT_JOB_MAX_INSTANCES, TASK, "default", [due]))
    missed = runs.latest_run(db, TASK, status="missed")
    assert missed.scheduled_for == due
    assert "previous run of this task was still going" in missed.error
