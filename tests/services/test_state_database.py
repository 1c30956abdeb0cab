"""Two databases: the data (backed up, restored) and the scheduler's state (never in a backup).

A stage-1 install kept the scheduler's tables in the data database; the first start of
this version moves them, once. A pickled job row is code: one that comes from a data
file (an old install, a restored or uploaded backup) must never be unpickled freely.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import create_engine, select

from app import ConfigError, create_app
from app.models import BackupRecord, Base, JobRun, ScheduleConfig, SchedulerState, StateMeta
from app.services.backup_tasks import restore_now
from app.services.data_database import journal_mode
from app.services.runner import run_task_now
from app.services.schedules import Schedule, build_trigger
from app.services.state_migration import MOVED_MARKER
from app.services.status import read_next_run, stored_jobs
from tests.support.data import fill_items, row_checksum
from tests.support.waiting import wait_for

LEGACY_TABLES = {"schedule_config", "job_run", "scheduler_state", "apscheduler_jobs"}


def tables(path: Path) -> set[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    return names


class RunsCode:
    """What an attacker puts in a job row: unpickling it runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_job_state(marker: Path, job_id: str = "backup_db") -> bytes:
    return pickle.dumps(
        {"version": 1, "id": job_id, "func": "app.tasks:scheduled_backup_job", "trigger": RunsCode(marker)}
    )


def stage_one_data_database(path: Path, marker: Path | None = None) -> None:
    """A data database as stage 1 left it: app rows beside the scheduler's tables and a stored job."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fill_items(path, 12, label="app data")
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine, tables=[t.__table__ for t in (ScheduleConfig, JobRun, SchedulerState)])
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO schedule_config (task, mode, cron, version, applied_version, updated_at) "
        "VALUES ('backup_db', 'cron', '0 3 * * *', 4, 4, '2026-11-01 10:00:00')"
    )
    conn.executemany(
        "INSERT INTO job_run (task, trigger, status, started_at, finished_at, file, size, sha256) "
        "VALUES ('backup_db', ?, 'success', '2026-11-02 03:00:00', '2026-11-02 03:00:01', ?, 4096, ?)",
        [("scheduled", "backup-20261102T030000.000000Z-auto.sqlite3", "a" * 64), ("manual", None, None)],
    )
    conn.execute(
        "INSERT INTO scheduler_state (id, leader_pid, leader_host, started_at, heartbeat_at) "
        "VALUES (1, 99999, 'old', '2026-11-01 10:00:00', '2026-11-01 10:00:00')"
    )
    conn.commit()
    conn.close()
    scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(engine=engine)}, timezone="Europe/Berlin")
    scheduler.start(paused=True)
    trigger = build_trigger(Schedule("cron", cron="0 3 * * *"), "Europe/Berlin")
    scheduler.add_job("app.tasks:scheduled_backup_job", trigger, id="backup_db", name="Database backup")
    scheduler.shutdown(wait=False)
    if marker is not None:
        conn = sqlite3.connect(path)
        conn.execute(
            "INSERT INTO apscheduler_jobs (id, next_run_time, job_state) VALUES ('evil', 1.0, ?)",
            (crafted_job_state(marker, "evil"),),
        )
        conn.commit()
        conn.close()
    engine.dispose()


def test_a_fresh_install_creates_no_table_in_the_data_database(app):
    data, state = Path(app.config["DATABASE_PATH"]), Path(app.config["STATE_DATABASE_PATH"])
    assert data.exists() and tables(data) == set()
    assert LEGACY_TABLES | {"backup_record", "state_meta"} <= tables(state)
    assert oct(data.stat().st_mode & 0o777) == "0o600"


def test_backups_hold_the_data_only_never_the_scheduler_state(app):
    fill_items(Path(app.config["DATABASE_PATH"]), 3)
    outcome = run_task_now(app.config, app.extensions["db"], "backup_db")
    backup = Path(app.config["BACKUPS_DIR"]) / outcome.result["file"]
    assert tables(backup) == {"item"}


def test_state_database_must_be_another_file(tmp_path):
    with pytest.raises(ConfigError, match="STATE_DATABASE_URL must name another file"):
        create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "x",
                "DATABASE_URL": f"sqlite:///{tmp_path / 'one.db'}",
                "STATE_DATABASE_URL": f"sqlite:///{tmp_path / 'one.db'}",
            }
        )


def test_first_start_moves_stage_one_tables_keeping_rows_and_the_pending_job(make_app, tmp_path):
    instance = tmp_path / "instance"
    data = instance / "app.db"
    stage_one_data_database(data)
    app_rows = row_checksum_of_items(data)

    app = make_app(INSTANCE_PATH=str(instance))
    db = app.extensions["db"]

    assert tables(data) == {"item"}
    assert row_checksum_of_items(data) == app_rows
    with db.session() as session:
        config = session.get(ScheduleConfig, "backup_db")
        assert (config.mode, config.cron, config.version, config.applied_version) == ("cron", "0 3 * * *", 4, 4)
        history = session.scalars(select(JobRun).order_by(JobRun.id)).all()
        assert [(run.trigger, run.file) for run in history] == [
            ("scheduled", "backup-20261102T030000.000000Z-auto.sqlite3"),
            ("manual", None),
        ]
        assert session.get(SchedulerState, 1).leader_host == "old"
        record = session.get(BackupRecord, "backup-20261102T030000.000000Z-auto.sqlite3")
        assert (record.kind, record.sha256) == ("auto", "a" * 64)
        assert session.get(StateMeta, MOVED_MARKER) is not None
    # The stored job came along with its pending fire time: no re-add, no lost catch-up.
    assert [job_id for job_id, _ in stored_jobs(db)] == ["backup_db"]
    assert read_next_run(db, "backup_db").astimezone(UTC).hour in (1, 2)  # 03:00 Berlin


def row_checksum_of_items(path: Path) -> list:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT id, label FROM item ORDER BY id").fetchall()
    conn.close()
    return rows


def test_a_crafted_job_row_is_never_unpickled_while_moving(make_app, tmp_path):
    instance = tmp_path / "instance"
    marker = tmp_path / "code-ran"
    stage_one_data_database(instance / "app.db", marker=marker)

    app = make_app(INSTANCE_PATH=str(instance))

    assert not marker.exists()
    assert [job_id for job_id, _ in stored_jobs(app.extensions["db"])] == ["backup_db"]  # ours kept, "evil" gone
    assert "apscheduler_jobs" not in tables(instance / "app.db")


def test_a_crafted_job_row_under_our_own_id_is_dropped_too(make_app, tmp_path):
    instance = tmp_path / "instance"
    data = instance / "app.db"
    marker = tmp_path / "code-ran"
    stage_one_data_database(data)
    with sqlite3.connect(data) as conn:
        conn.execute("UPDATE apscheduler_jobs SET job_state = ? WHERE id = 'backup_db'", (crafted_job_state(marker),))
    conn.close()

    app = make_app(INSTANCE_PATH=str(instance))

    assert not marker.exists()
    assert stored_jobs(app.extensions["db"]) == []
    with app.extensions["db"].session() as session:  # the schedule itself survives: the leader re-adds the job
        assert session.get(ScheduleConfig, "backup_db").cron == "0 3 * * *"


def test_restoring_a_backup_that_carries_a_crafted_job_row_never_loads_it(app, tmp_path):
    """The restored data keeps its rows, but the scheduler reads jobs from the state database only."""
    data, folder = Path(app.config["DATABASE_PATH"]), Path(app.config["BACKUPS_DIR"])
    marker = tmp_path / "code-ran"
    crafted = tmp_path / "crafted.sqlite3"
    stage_one_data_database(crafted, marker=marker)
    folder.mkdir(exist_ok=True)
    name = "backup-20261101T000000.000000Z-uploaded.sqlite3"
    (folder / name).write_bytes(crafted.read_bytes())

    outcome = restore_now(app.config, app.extensions["db"], name)
    assert outcome.error is None, outcome.error
    assert "apscheduler_jobs" in tables(data)  # the user's restored file, as it was

    # A new process start (migration check) and a leader that reconciles and fires.
    again = create_app(
        {"TESTING": True, "SECRET_KEY": "x", "INSTANCE_PATH": app.config["INSTANCE_PATH"], "WTF_CSRF_ENABLED": False}
    )
    scheduler = again.extensions["scheduler"]
    scheduler.start()
    try:
        wait_for(lambda: scheduler.is_leader, 10)
        scheduler.reconcile()
        assert [job.id for job in scheduler._scheduler.get_jobs()] == []
    finally:
        scheduler.stop()
        again.extensions["db"].dispose()
    assert not marker.exists()
    assert stored_jobs(app.extensions["db"]) == []


def test_a_rollback_journal_data_database_keeps_its_mode_through_start_and_backup(make_app, tmp_path):
    data = tmp_path / "other-app.db"
    conn = sqlite3.connect(data)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    fill_items(data, 10)
    before = row_checksum(data)

    app = make_app(DATABASE_URL=f"sqlite:///{data}")
    outcome = run_task_now(app.config, app.extensions["db"], "backup_db")

    assert outcome.error is None
    assert journal_mode(data) == "delete"
    assert not Path(f"{data}-wal").exists()
    assert tables(data) == {"item"} and row_checksum(data) == before


def test_the_move_happens_once_even_if_old_tables_come_back(make_app, tmp_path):
    instance = tmp_path / "instance"
    data = instance / "app.db"
    stage_one_data_database(data)
    make_app(INSTANCE_PATH=str(instance))
    stage_one_data_database(tmp_path / "old.db")
    with sqlite3.connect(tmp_path / "old.db") as conn:  # e.g. a restored stage-1 backup
        conn.execute("UPDATE schedule_config SET cron = '0 5 * * *'")
    conn.close()
    data.write_bytes((tmp_path / "old.db").read_bytes())

    app = make_app(INSTANCE_PATH=str(instance))

    with app.extensions["db"].session() as session:
        assert session.get(ScheduleConfig, "backup_db").cron == "0 3 * * *"  # not rewound
    assert "schedule_config" in tables(data)  # restored data is left as the user chose it


def test_the_catalogue_is_filled_by_every_backup(app):
    fill_items(Path(app.config["DATABASE_PATH"]), 3)
    outcome = run_task_now(app.config, app.extensions["db"], "backup_db")
    with app.extensions["db"].session() as session:
        record = session.get(BackupRecord, outcome.result["file"])
    assert (record.kind, record.sha256, record.size) == ("manual", outcome.result["sha256"], outcome.result["size"])
    assert record.verified_at is not None and record.verified_at <= datetime.now(UTC)


def test_another_apps_tables_with_our_names_are_left_alone(make_app, tmp_path):
    """A data file of another application may have an apscheduler_jobs or job_run of its own."""
    data = tmp_path / "other-app.db"
    conn = sqlite3.connect(data)
    conn.execute("CREATE TABLE apscheduler_jobs (id TEXT PRIMARY KEY, next_run_time REAL, job_state BLOB)")
    conn.execute("INSERT INTO apscheduler_jobs VALUES ('their_job', 1.0, x'00')")
    conn.execute("CREATE TABLE job_run (id INTEGER PRIMARY KEY, customer TEXT, amount INTEGER)")
    conn.execute("INSERT INTO job_run (customer, amount) VALUES ('acme', 12)")
    conn.execute("CREATE TABLE schedule_config (name TEXT, cronline TEXT)")
    conn.commit()
    conn.close()
    before = row_checksum(data)

    app = make_app(DATABASE_URL=f"sqlite:///{data}")

    assert tables(data) == {"apscheduler_jobs", "job_run", "schedule_config"}
    assert row_checksum(data) == before
    assert stored_jobs(app.extensions["db"]) == []
