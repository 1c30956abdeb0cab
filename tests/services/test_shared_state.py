"""The state database on PostgreSQL (several hosts) beside SQLite: same schema, the database as arbiter.

Each test that takes ``state_db`` runs on both engines: what makes a fire time run once
and a task run single-flight (two unique indexes) holds on SQLite too.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text, update

from app.db import Database
from app.models import JobRun, LeaderLease
from app.services import runs
from app.services.leadership import LeaseLeadership
from app.services.registry import TASKS
from app.services.runner import FireTimeTaken, TaskBusy, claim_task, complete_task

pytestmark = pytest.mark.xdist_group("postgres")

FIRE_TIME = datetime(2026, 3, 1, 2, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def state_db(request, tmp_path):
    """A state database with every table, on SQLite or on PostgreSQL."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'state.db'}", tmp_path / "state.db")
    else:
        db = Database(request.getfixturevalue("postgres_url"))
    db.create_tables()
    yield db
    db.dispose()


def schema(db: Database) -> dict[str, tuple[set[str], set[str]]]:
    """Per table: its column names and the names of its unique indexes."""
    inspector = inspect(db.engine)
    return {
        table: (
            {column["name"] for column in inspector.get_columns(table)},
            {index["name"] for index in inspector.get_indexes(table) if index["unique"]},
        )
        for table in inspector.get_table_names()
    }


def test_both_engines_get_the_same_tables_columns_and_unique_indexes(tmp_path, postgres_url):
    on_sqlite = Database(f"sqlite:///{tmp_path / 'state.db'}", tmp_path / "state.db")
    on_postgres = Database(postgres_url)
    for db in (on_sqlite, on_postgres):
        db.create_tables()
    assert schema(on_sqlite) == schema(on_postgres)
    assert {"uq_job_run_fire_time", "uq_job_run_running"} <= schema(on_postgres)["job_run"][1]
    assert "leader_lease" in schema(on_postgres)


def test_an_old_sqlite_state_database_gets_the_new_columns_and_indexes(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:  # job_run as the previous version created it, with one row
        conn.execute(
            "CREATE TABLE job_run (id INTEGER PRIMARY KEY, task VARCHAR(64), trigger VARCHAR(16), status VARCHAR(16),"
            " scheduled_for DATETIME, started_at DATETIME, finished_at DATETIME, pid INTEGER, phase VARCHAR(32),"
            " progress INTEGER, error TEXT, file VARCHAR(255), size INTEGER, sha256 VARCHAR(64), detail TEXT)"
        )
        conn.execute(
            "INSERT INTO job_run (task, trigger, status, started_at)"
            " VALUES ('backup_db', 'manual', 'success', '2026-01-01')"
        )
    db = Database(f"sqlite:///{path}", path)
    db.create_tables()
    columns, indexes = schema(db)["job_run"]
    assert {"host", "lease_until"} <= columns
    assert {"uq_job_run_fire_time", "uq_job_run_running"} <= indexes
    assert len(runs.recent_runs(db, "backup_db")) == 1


def test_a_fire_time_is_claimed_once_and_the_loser_records_nothing(state_db):
    first = runs.start_run(state_db, "backup_db", "scheduled", FIRE_TIME)
    runs.finish_run(state_db, first.id, "success")
    assert runs.start_run(state_db, "backup_db", "scheduled", FIRE_TIME) is None
    assert runs.record_missed_run(state_db, "backup_db", FIRE_TIME, "late") is None
    assert [(run.id, run.status) for run in runs.recent_runs(state_db, "backup_db")] == [(first.id, "success")]
    # Another task, or another fire time, is another claim; manual runs have no fire time.
    assert runs.start_run(state_db, "verify_backups", "scheduled", FIRE_TIME) is not None
    assert runs.start_run(state_db, "backup_db", "scheduled", FIRE_TIME + timedelta(minutes=1)) is not None


def test_a_task_has_at_most_one_running_run(state_db):
    from sqlalchemy.exc import IntegrityError

    runs.start_run(state_db, "backup_db", "manual")
    with pytest.raises(IntegrityError):
        runs.start_run(state_db, "backup_db", "manual")
    assert runs.start_run(state_db, "verify_backups", "manual") is not None


def test_a_run_whose_lease_passed_is_closed_by_whoever_notices(postgres_url, monkeypatch):
    monkeypatch.setattr(runs, "LEASE_GRACE_SECONDS", 0.05)  # the grace is tested on its own below
    db = Database(postgres_url)
    db.create_tables()
    run = runs.start_run(db, "backup_db", "manual", lease_seconds=60)
    with db.writer() as session:  # as if it ran on another host, whose pid means nothing here
        session.execute(update(JobRun).where(JobRun.id == run.id).values(host="elsewhere", pid=1))
    assert runs.close_dead_runs(db, "backup_db", "gone") == []  # its lease still holds
    assert runs.renew_lease(db, run.id, 0.2)
    time.sleep(0.3)
    (closed,) = runs.close_dead_runs(db, "backup_db", "gone")
    assert (closed.id, closed.status, closed.error) == (run.id, "interrupted", "gone")
    assert not runs.renew_lease(db, run.id, 60)  # its owner learns it was closed


def test_a_run_of_a_dead_process_on_this_host_is_closed_without_waiting_for_its_lease(postgres_url):
    db = Database(postgres_url)
    db.create_tables()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = runs.start_run(db, "backup_db", "manual", lease_seconds=600)
    with db.writer() as session:
        session.execute(update(JobRun).where(JobRun.id == run.id).values(pid=dead.pid))
    assert [closed.id for closed in runs.close_dead_runs(db, "backup_db", "gone")] == [run.id]


@pytest.fixture
def pg_app(make_app, postgres_url):
    return make_app(STATE_DATABASE_URL=postgres_url)


def test_the_app_runs_on_a_postgres_state_database(pg_app):
    client = pg_app.test_client()
    answer = client.post("/api/v1/settings/backup-db")
    assert answer.status_code == 200, answer.json
    status = client.get("/api/v1/settings/scheduler").json
    assert [run["status"] for run in status["history"]] == ["success"]
    assert pg_app.config["STATE_DATABASE_PATH"] is None


def test_a_second_claim_while_a_run_lives_on_another_host_is_refused_with_that_run(pg_app):
    db = pg_app.extensions["db"]
    run = runs.start_run(db, "backup_db", "manual", lease_seconds=60)
    with db.writer() as session:
        session.execute(update(JobRun).where(JobRun.id == run.id).values(host="elsewhere", pid=1))
    with pytest.raises(TaskBusy) as refused:
        claim_task(pg_app.config, db, "backup_db", "manual")
    assert refused.value.running.id == run.id


def test_a_scheduled_claim_of_a_taken_fire_time_does_nothing(pg_app):
    db = pg_app.extensions["db"]
    run, lock = claim_task(pg_app.config, db, "backup_db", "scheduled", FIRE_TIME)
    complete_task(pg_app.config, db, run, lock)
    with pytest.raises(FireTimeTaken):
        claim_task(pg_app.config, db, "backup_db", "scheduled", FIRE_TIME)
    assert not TASKS["backup_db"].lock(pg_app.config).held  # the loser let the task's lock go
    assert [run.status for run in runs.recent_runs(db, "backup_db")] == ["success"]


def test_a_running_run_renews_its_lease(make_app, postgres_url):
    app = make_app(STATE_DATABASE_URL=postgres_url, SCHEDULER_LEASE_SECONDS="1", SCHEDULER_TICK_SECONDS="0.25")
    db = app.extensions["db"]
    run, lock = claim_task(app.config, db, "backup_db", "manual")
    try:
        first = runs.get_run(db, run.id).lease_until
        time.sleep(1.5)  # real clock under test: the lease would have passed without renewal
        assert runs.close_dead_runs(db, "backup_db", "gone") == []
        assert runs.get_run(db, run.id).lease_until > first
    finally:
        lock.release()


def test_one_lease_holder_at_a_time_and_a_passed_lease_is_taken_over(postgres_url):
    db = Database(postgres_url)
    db.create_tables()
    first, second = LeaseLeadership(db, 0.5), LeaseLeadership(db, 0.5)
    assert first.try_acquire()
    assert not second.try_acquire()
    assert first.renew()
    time.sleep(0.7)  # real clock under test: first "paused" past its lease
    assert second.try_acquire()
    assert not first.renew()  # the old leader steps down
    assert not first.try_acquire()
    second.release()  # a clean stop frees it at once
    assert first.try_acquire()


def test_a_leader_whose_row_was_taken_cannot_renew_even_within_its_own_clock(postgres_url):
    db = Database(postgres_url)
    db.create_tables()
    first, second = LeaseLeadership(db, 30), LeaseLeadership(db, 30)
    assert first.try_acquire()
    with db.writer() as session:  # the row passed (as judged by the database's clock)
        session.execute(update(LeaderLease).values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
    assert second.try_acquire()
    assert not first.renew()


def test_others_wait_a_grace_past_the_lease_before_closing_a_run(postgres_url):
    db = Database(postgres_url)
    db.create_tables()
    run = runs.start_run(db, "backup_db", "manual", lease_seconds=60)
    with db.writer() as session:
        session.execute(update(JobRun).where(JobRun.id == run.id).values(host="elsewhere", pid=1))
    assert runs.renew_lease(db, run.id, 0.2)
    time.sleep(0.5)  # the lease has passed, the grace has not: the run stops itself first
    assert runs.close_dead_runs(db, "backup_db", "gone") == []


def test_a_closed_run_that_ends_later_keeps_its_closed_record(postgres_url, monkeypatch):
    monkeypatch.setattr(runs, "LEASE_GRACE_SECONDS", 0.05)
    db = Database(postgres_url)
    db.create_tables()
    run = runs.start_run(db, "backup_db", "manual", lease_seconds=60)
    with db.writer() as session:
        session.execute(update(JobRun).where(JobRun.id == run.id).values(host="elsewhere", pid=1))
    runs.renew_lease(db, run.id, 0.1)
    time.sleep(0.3)
    assert [closed.id for closed in runs.close_dead_runs(db, "backup_db", "gone")] == [run.id]
    runs.finish_run(db, run.id, "success", file="late.sqlite3")
    record = runs.get_run(db, run.id)
    assert (record.status, record.error, record.file) == ("interrupted", "gone", None)
    assert record.detail == "It went on after being closed and ended: success."


def test_a_run_that_loses_its_lease_stops_at_its_next_progress_report(make_app, postgres_url):
    from app.services.errors import TaskError
    from app.services.runner import LEASE_LOST

    app = make_app(STATE_DATABASE_URL=postgres_url, SCHEDULER_LEASE_SECONDS="1", SCHEDULER_TICK_SECONDS="0.25")
    db = app.extensions["db"]
    run, lock = claim_task(app.config, db, "verify_backups", "manual")
    with db.writer() as session:  # another host closed it (its lease had passed there)
        session.execute(update(JobRun).where(JobRun.id == run.id).values(status="interrupted", error="gone"))
    seen = []

    def body(ctx):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                ctx.report("working", None)
            except TaskError as exc:
                seen.append(str(exc))
                raise
            time.sleep(0.05)
        return {"detail": "never stopped"}

    started = time.monotonic()
    outcome = complete_task(app.config, db, run, lock, body=body)
    assert seen == [LEASE_LOST] and time.monotonic() - started < 3
    assert outcome.error is not None
    assert runs.get_run(db, run.id).status == "interrupted"  # the other host's record stands


def test_no_server_side_prepared_statements_for_pgbouncer_transaction_mode(postgres_url):
    db = Database(postgres_url)
    db.create_tables()
    with db.engine.connect() as connection:  # psycopg prepares a statement run 5 times unless told not to
        for _ in range(8):
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": 42})
        assert connection.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar() == 0


def test_stage_one_rows_sharing_a_fire_time_do_not_keep_the_exactly_once_index_out(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:  # stage 1: a claim that failed, then a "missed" row, same fire time
        conn.execute(
            "CREATE TABLE job_run (id INTEGER PRIMARY KEY, task VARCHAR(64), trigger VARCHAR(16), status VARCHAR(16),"
            " scheduled_for DATETIME, started_at DATETIME, finished_at DATETIME, pid INTEGER, phase VARCHAR(32),"
            " progress INTEGER, error TEXT, file VARCHAR(255), size INTEGER, sha256 VARCHAR(64), detail TEXT)"
        )
        for status in ("interrupted", "missed"):
            conn.execute(
                "INSERT INTO job_run (task, trigger, status, scheduled_for, started_at)"
                " VALUES ('backup_db', 'scheduled', ?, '2026-01-01 03:00:00.000000', '2026-01-01')",
                (status,),
            )
    db = Database(f"sqlite:///{path}", path)
    db.create_tables()
    assert "uq_job_run_fire_time" in schema(db)["job_run"][1]
    history = [(run.status, run.scheduled_for is None) for run in runs.recent_runs(db, "backup_db")]
    assert history == [("missed", True), ("interrupted", False)]  # both kept, one fire time
    assert runs.start_run(db, "backup_db", "scheduled", FIRE_TIME) is not None  # scheduled runs work


def test_a_host_whose_clock_runs_ahead_still_sees_a_fresh_heartbeat(postgres_url, monkeypatch):
    """Hosts' clocks may drift: the heartbeat is written and judged by the database's clock.
    The host clock is the one stand-in here (20 s ahead), as the real one cannot be moved."""
    from app.models import SchedulerState, utcnow
    from app.services import status

    db = Database(postgres_url)
    db.create_tables()
    with db.writer() as session:
        now = runs.database_now(db, session)
        session.add(SchedulerState(id=1, leader_pid=1, leader_host="h", started_at=now, heartbeat_at=now))
    ahead = lambda: utcnow() + timedelta(seconds=20)  # noqa: E731
    monkeypatch.setattr(status, "utcnow", ahead)
    monkeypatch.setattr(runs, "utcnow", ahead)
    _state, age = status.read_leader_state(db)
    assert age is not None and age < status.STALE_AFTER_SECONDS
