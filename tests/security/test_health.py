"""``GET /healthz``: public, and honest about the database, the scheduler and the last good backup."""

from __future__ import annotations

import os
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from app.models import JobRun, ScheduleConfig, SchedulerState, utcnow
from app.services.schedules import Schedule, save_schedule
from app.services.status import STALE_AFTER_SECONDS
from tests.security.support import PASSWORD, TOKEN

HOURLY = Schedule("interval", every_hours=1)


def beat(db, age_seconds: float) -> None:
    """Write the leader's heartbeat row as if the last beat was ``age_seconds`` ago."""
    moment = utcnow() - timedelta(seconds=age_seconds)
    with db.writer() as session:
        session.merge(
            SchedulerState(
                id=1,
                leader_pid=os.getpid(),
                leader_host="test",
                started_at=moment - timedelta(hours=1),
                heartbeat_at=moment,
            )
        )


def successful_backup(db, hours_ago: float) -> None:
    """A JobRun that finished successfully ``hours_ago`` hours ago."""
    finished = utcnow() - timedelta(hours=hours_ago)
    with db.writer() as session:
        session.add(
            JobRun(
                task="backup_db",
                trigger="scheduled",
                status="success",
                started_at=finished - timedelta(seconds=2),
                finished_at=finished,
                file="backup-20260101T000000.000000Z-auto.sqlite3",
            )
        )


def health(client) -> tuple[int, dict]:
    response = client.get("/healthz")
    return response.status_code, response.get_json()


def test_health_needs_no_login_even_with_a_password(make_app):
    client = make_app(ADMIN_PASSWORD=PASSWORD, API_TOKEN=TOKEN).test_client()

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.is_json
    assert response.get_json()["status"] == "ok"


def test_a_healthy_app_reports_database_sqlite_scheduler_and_backup_fields(db, client):
    successful_backup(db, hours_ago=0.5)

    status, body = health(client)

    assert status == 200
    assert body["status"] == "ok"
    assert body["reasons"] == []
    assert body["database"] == {"reachable": True}
    assert body["sqlite_version"] == sqlite3.sqlite_version
    assert body["sqlite_wal_reset_bug_fixed"] is (sqlite3.sqlite_version_info >= (3, 51, 3))
    assert body["scheduler"] == {"enabled": True, "running": False, "heartbeat_age_seconds": None}
    assert body["backup"]["schedule"] == {"mode": "disabled"}
    assert 1790 <= body["backup"]["last_success_age_seconds"] <= 1810


def test_without_any_backup_the_age_of_the_last_success_is_null(client):
    status, body = health(client)

    assert status == 200
    assert body["backup"]["last_success_age_seconds"] is None


def test_a_failed_run_does_not_count_as_the_last_success(db, client):
    successful_backup(db, hours_ago=2)
    with db.writer() as session:
        session.add(JobRun(task="backup_db", trigger="manual", status="failed", finished_at=utcnow()))

    assert 7190 <= health(client)[1]["backup"]["last_success_age_seconds"] <= 7210


def test_an_active_schedule_without_a_heartbeat_is_degraded(db, client):
    save_schedule(db, "backup_db", HOURLY)

    status, body = health(client)

    assert status == 503
    assert body["status"] == "degraded"
    assert any("scheduler is not running" in reason for reason in body["reasons"])
    assert body["scheduler"]["running"] is False


def test_an_active_schedule_with_a_stale_heartbeat_is_degraded(db, client):
    save_schedule(db, "backup_db", HOURLY)
    beat(db, age_seconds=STALE_AFTER_SECONDS + 30)

    status, body = health(client)

    assert status == 503
    assert body["status"] == "degraded"
    assert any("scheduler is not running" in reason for reason in body["reasons"])
    assert body["scheduler"]["heartbeat_age_seconds"] >= STALE_AFTER_SECONDS + 30


def test_an_active_schedule_with_a_fresh_heartbeat_and_a_recent_success_is_ok(db, client):
    save_schedule(db, "backup_db", HOURLY)
    beat(db, age_seconds=1)
    successful_backup(db, hours_ago=0.5)

    status, body = health(client)

    assert status == 200, body["reasons"]
    assert body["status"] == "ok"
    assert body["scheduler"]["running"] is True
    assert body["scheduler"]["heartbeat_age_seconds"] < STALE_AFTER_SECONDS


def test_a_last_success_older_than_twice_the_period_is_degraded_even_with_a_running_scheduler(db, client):
    save_schedule(db, "backup_db", HOURLY)
    beat(db, age_seconds=1)
    successful_backup(db, hours_ago=3)

    status, body = health(client)

    assert status == 503
    assert body["status"] == "degraded"
    assert body["reasons"] == ["The last successful backup is older than twice the schedule's period (2 h)."]
    assert body["scheduler"]["running"] is True


def test_a_daily_schedule_whose_last_success_is_three_days_old_is_degraded(db, client):
    save_schedule(db, "backup_db", Schedule("daily", time="02:30"))
    beat(db, age_seconds=1)
    successful_backup(db, hours_ago=72)

    status, body = health(client)

    assert status == 503
    assert any("twice the schedule's period (48 h)" in reason for reason in body["reasons"])


def test_a_schedule_that_never_succeeded_since_it_was_set_long_ago_is_degraded(db, client):
    save_schedule(db, "backup_db", HOURLY)
    with db.writer() as session:
        session.execute(update(ScheduleConfig).values(updated_at=utcnow() - timedelta(hours=3)))
    beat(db, age_seconds=1)

    status, body = health(client)

    assert status == 503
    assert any("older than twice" in reason for reason in body["reasons"])


def test_a_schedule_saved_just_now_is_not_yet_overdue(db, client):
    save_schedule(db, "backup_db", HOURLY)
    beat(db, age_seconds=1)

    assert health(client)[0] == 200


def test_a_disabled_schedule_without_a_heartbeat_is_ok(db, client):
    save_schedule(db, "backup_db", Schedule("disabled"))
    successful_backup(db, hours_ago=500)

    status, body = health(client)

    assert status == 200
    assert body["reasons"] == []


def test_with_the_scheduler_switched_off_a_schedule_without_heartbeat_is_not_degraded(make_app):
    app = make_app(SCHEDULER_ENABLED="false")
    save_schedule(app.extensions["db"], "backup_db", HOURLY)
    successful_backup(app.extensions["db"], hours_ago=3)

    status, body = health(app.test_client())

    assert status == 200
    assert body["scheduler"]["enabled"] is False
    assert body["scheduler"]["running"] is False
    assert body["reasons"] == []


def test_an_unreadable_database_answers_503_with_the_reason(app, client):
    db = app.extensions["db"]
    db.dispose()
    database = Path(app.config["STATE_DATABASE_PATH"])
    for side_file in (database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        side_file.unlink(missing_ok=True)
    database.write_bytes(b"this is not a SQLite database" * 200)

    status, body = health(client)

    assert status == 503
    assert body["status"] == "error"
    assert body["database"]["reachable"] is False
    assert body["reasons"] == ["The database is not reachable."]


@pytest.mark.parametrize("with_password", [False, True])
def test_the_health_answer_reveals_no_paths_or_secrets(make_app, with_password):
    app = make_app(**({"ADMIN_PASSWORD": PASSWORD, "API_TOKEN": TOKEN} if with_password else {}))

    body = app.test_client().get("/healthz").get_data(as_text=True)

    for secret in (app.instance_path, app.config["DATABASE_PATH"], app.config["SECRET_KEY"], TOKEN, PASSWORD):
        assert secret not in body
