"""Issue 14's API details: 409 bodies, ASCII input, JSON numbers, weekday errors."""

from __future__ import annotations

import threading
import time

import pytest

from app.models import JobRun
from app.services.scheduler import load_schedule
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


def test_the_html_form_refuses_every_hours_in_other_digits_too(client, db):
    response = client.post("/settings/schedule", data={"mode": "interval", "every_hours": "\u0666"})
    assert response.status_code == 422
    assert load_schedule(db, "backup_db")[1] is None
