"""Issue 14's API and security details: 409 bodies, ASCII input, JSON numbers, weekday errors,
owner-only database files, and the SQLite WAL-reset warning."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from app.models import JobRun
from app.services.schedules import load_schedule
from tests.settings.html_tree import parse
from tests.support.locks import backup_running

API = "/api/v1/settings"


@pytest.mark.parametrize("url", [f"{API}/backup-db", f"{API}/scheduler/backup/run"])
def test_a_409_names_the_running_run_even_when_it_is_recorded_after_the_lock_is_taken(app, client, db, url):
    """Another process holds the lock and writes its run row a moment later: the 409 waits for it."""

    def record_run_late():
        time.sleep(0.3)
        with db.writer() as session:
            session.add(JobRun(task="backup_db", trigger="manual", status="running", pid=1, phase="starting"))

    with backup_running(app):
        writer = threading.Thread(target=record_run_late)
        writer.start()
        response = client.post(url)
        writer.join()

    assert response.status_code == 409
    running = response.get_json()["running"]
    assert running is not None and isinstance(running["id"], int)
    assert running["status"] == "running"


def test_a_409_is_never_running_null_even_when_the_lock_holder_records_no_run(app, client):
    with backup_running(app):
        response = client.post(f"{API}/backup-db")

    assert response.status_code == 409
    running = response.get_json()["running"]
    assert running is not None
    assert running["status"] == "running" and running["task"] == "backup_db"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "cron", "cron": "0 \u0662 * * *"}, "cron"),  # Arabic-Indic two
        ({"mode": "interval", "every_hours": "\u0666"}, "every_hours"),
        ({"mode": "daily", "time": "\u0660\u0662:30"}, "time"),
    ],
)
def test_digits_other_than_ascii_are_refused_so_other_cron_tools_can_read_what_is_stored(client, db, body, field):
    response = client.post(f"{API}/scheduler/backup", json=body)

    assert response.status_code == 400
    assert field in response.get_json()["errors"]
    assert load_schedule(db, "backup_db")[1] is None  # nothing stored


def test_every_hours_as_a_whole_json_float_is_accepted(client, db):
    response = client.post(f"{API}/scheduler/backup", json={"mode": "interval", "every_hours": 6.0})

    assert response.status_code == 200, response.get_json()
    assert load_schedule(db, "backup_db")[0].every_hours == 6


@pytest.mark.parametrize("value", [6.5, float("1e300")])
def test_every_hours_that_is_not_a_whole_number_in_range_is_refused(client, value):
    response = client.post(f"{API}/scheduler/backup", json={"mode": "interval", "every_hours": value})
    assert response.status_code == 400


def test_a_weekday_error_names_the_wrong_values_in_order_and_the_valid_ones(client):
    response = client.post(
        f"{API}/scheduler/backup", json={"mode": "weekly", "time": "02:30", "weekdays": ["xyz", "abc"]}
    )

    (message,) = response.get_json()["errors"]["weekdays"]
    assert message.index("'xyz'") < message.index("'abc'")
    assert "mon, tue, wed, thu, fri, sat, sun" in message


def test_the_database_and_its_wal_and_shm_files_are_created_owner_only(make_app, tmp_path, client):
    app = make_app(INSTANCE_PATH=str(tmp_path / "fresh"))
    app.test_client().post(f"{API}/scheduler/backup", json={"mode": "daily", "time": "02:30"})  # a write: -wal, -shm
    database = Path(app.config["DATABASE_PATH"])

    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_an_sqlite_without_the_wal_reset_fix_is_a_warning_in_the_page_and_healthz(client, monkeypatch):
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 40, 1))

    notice = parse(client.get("/settings").get_data(as_text=True)).by_id("sqlite-version")
    health = client.get("/healthz").get_json()

    assert "Warning" in notice.text and "3.51.3" in notice.text
    assert health["sqlite_wal_reset_bug_fixed"] is False
    assert any("3.51.3" in warning for warning in health["warnings"])


def test_an_sqlite_with_the_fix_shows_its_version_without_a_warning(client, monkeypatch):
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 51, 3))

    notice = parse(client.get("/settings").get_data(as_text=True)).by_id("sqlite-version")

    assert "Warning" not in notice.text and sqlite3.sqlite_version in notice.text
    assert client.get("/healthz").get_json()["warnings"] == []


def test_the_html_form_refuses_every_hours_in_other_digits_too(client, db):
    response = client.post("/settings/schedule/backup_db", data={"mode": "interval", "every_hours": "\u0666"})
    assert response.status_code == 422
    assert load_schedule(db, "backup_db")[1] is None
