"""The JSON API of DESIGN.md section 6: manual backup, schedule, run now, jobs."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from app.services.backups import backup_lock
from app.services.schedules import load_schedule
from tests.support.waiting import wait_for

API = "/api/v1/settings"
BERLIN = ZoneInfo("Europe/Berlin")
BERLIN_OFFSETS = ("+01:00", "+02:00")
RUN_TIMEOUT_SECONDS = 10


def backup_files(app) -> list[Path]:
    return sorted(Path(app.config["BACKUPS_DIR"]).glob("backup-*.sqlite3"))


def stored(db) -> tuple[dict, int | None]:
    schedule, row = load_schedule(db, "backup_db")
    return schedule.as_dict(), None if row is None else row.version


def wait_for_run(client, run_id: int) -> dict:
    """Poll a started run until it has finished; fail after RUN_TIMEOUT_SECONDS."""

    def finished():
        run = client.get(f"{API}/scheduler/runs/{run_id}").get_json()["run"]
        return run if run["status"] != "running" else None

    return wait_for(finished, RUN_TIMEOUT_SECONDS, message=f"run {run_id} still running after {RUN_TIMEOUT_SECONDS} s")


def post_from_threads(app, url: str, count: int) -> list:
    """Fire ``count`` POSTs at once, each from its own thread and test client."""
    barrier = threading.Barrier(count)
    answers: list = [None] * count

    def fire(index: int) -> None:
        client = app.test_client()
        barrier.wait()
        answers[index] = client.post(url)

    threads = [threading.Thread(target=fire, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def assert_offset_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    assert moment.utcoffset() is not None, value
    return moment


# --- POST /settings/backup-db -------------------------------------------------------------


def test_backup_db_writes_a_verified_file_and_describes_it(app, client):
    response = client.post(f"{API}/backup-db")
    body = response.get_json()

    assert response.status_code == 200
    assert {"file", "size", "sha256", "created_at", "duration_ms"} <= set(body)
    path = Path(app.config["BACKUPS_DIR"]) / body["file"]
    assert path.is_file()
    assert body["size"] == path.stat().st_size
    assert body["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert abs(assert_offset_time(body["created_at"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert isinstance(body["duration_ms"], int)


def test_backup_db_into_a_folder_under_a_file_answers_507_naming_the_folder(make_app, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    app = make_app(BACKUPS_DIR=str(blocker / "backups"))

    response = app.test_client().post(f"{API}/backup-db")

    assert response.status_code == 507
    assert app.config["BACKUPS_DIR"] in response.get_json()["error"]


def test_backup_db_while_the_lock_is_held_answers_409(app, client):
    lock = backup_lock(Path(app.config["DATABASE_PATH"]))
    assert lock.try_acquire()
    try:
        response = client.post(f"{API}/backup-db")
    finally:
        lock.release()

    assert response.status_code == 409
    assert response.get_json()["error"] == "A backup is already running."
    assert backup_files(app) == []


# --- GET /settings/scheduler ----------------------------------------------------------------


def test_scheduler_status_names_the_zone_the_scheduler_and_the_backup_job(client):
    response = client.get(f"{API}/scheduler")
    body = response.get_json()

    assert response.status_code == 200
    assert body["timezone"] == "Europe/Berlin"
    assert body["scheduler"]["running"] is False  # never started in tests
    job = body["jobs"][0]
    assert {"id", "schedule", "description", "next_run_at", "last_run"} <= set(job)
    assert job["id"] == "backup_db"
    assert job["schedule"] == {"mode": "disabled"}
    assert job["next_run_at"] is None
    assert job["last_run"] is None


def test_scheduler_status_shows_the_saved_schedule_and_the_last_run(client):
    client.post(f"{API}/scheduler/backup", json={"mode": "daily", "time": "02:30"})
    backup = client.post(f"{API}/backup-db").get_json()

    job = client.get(f"{API}/scheduler").get_json()["jobs"][0]

    assert job["schedule"] == {"mode": "daily", "time": "02:30"}
    assert job["next_run_at"].endswith(BERLIN_OFFSETS)
    assert job["last_run"]["file"] == backup["file"]
    assert job["last_run"]["status"] == "success"


# --- POST /settings/scheduler/backup --------------------------------------------------------

VALID = {
    "daily": {"mode": "daily", "time": "02:30"},
    "weekly": {"mode": "weekly", "time": "04:15", "weekdays": ["mon", "thu"]},
    "cron": {"mode": "cron", "cron": "30 2 * * 1-5"},
    "interval": {"mode": "interval", "every_hours": 6},
}
LOCAL_TIME = {"daily": (2, 30), "weekly": (4, 15), "cron": (2, 30)}


@pytest.mark.parametrize("mode", VALID)
def test_a_valid_schedule_is_saved_and_answered_as_a_job_in_the_configured_zone(client, db, mode):
    response = client.post(f"{API}/scheduler/backup", json=VALID[mode])
    job = response.get_json()

    assert response.status_code == 200
    assert job["id"] == "backup_db"
    assert job["schedule"] == VALID[mode]
    assert stored(db)[0] == VALID[mode]
    assert job["description"]
    assert job["next_run_at"].endswith(BERLIN_OFFSETS)
    moment = assert_offset_time(job["next_run_at"])
    assert datetime.now(UTC) < moment < datetime.now(UTC) + timedelta(days=8)
    if mode in LOCAL_TIME:
        local = moment.astimezone(BERLIN)
        assert (local.hour, local.minute) == LOCAL_TIME[mode]


def test_weekly_description_and_next_run_follow_the_chosen_days(client):
    job = client.post(f"{API}/scheduler/backup", json=VALID["weekly"]).get_json()

    assert job["description"] == "Every Monday and Thursday at 04:15"
    assert datetime.fromisoformat(job["next_run_at"]).astimezone(BERLIN).weekday() in (0, 3)


def test_an_interval_schedule_runs_first_after_the_interval(client):
    job = client.post(f"{API}/scheduler/backup", json={"mode": "interval", "every_hours": 6}).get_json()

    delay = assert_offset_time(job["next_run_at"]) - datetime.now(UTC)
    assert timedelta(hours=5, minutes=59) < delay <= timedelta(hours=6)
    assert job["description"] == "Every 6 hours"


def test_saving_disabled_answers_no_next_run(client):
    client.post(f"{API}/scheduler/backup", json=VALID["daily"])

    job = client.post(f"{API}/scheduler/backup", json={"mode": "disabled"}).get_json()

    assert job["schedule"] == {"mode": "disabled"}
    assert job["next_run_at"] is None


def test_a_time_without_leading_zero_is_answered_and_stored_as_hh_mm(client, db):
    job = client.post(f"{API}/scheduler/backup", json={"mode": "daily", "time": "2:05"}).get_json()

    assert job["schedule"] == {"mode": "daily", "time": "02:05"}
    assert stored(db)[0] == {"mode": "daily", "time": "02:05"}


# (body, the field the error must name)
INVALID = {
    "cron minute 61": ({"mode": "cron", "cron": "61 * * * *"}, "cron"),
    "cron four fields": ({"mode": "cron", "cron": "* * * *"}, "cron"),
    "cron weekday 8": ({"mode": "cron", "cron": "0 0 * * 8"}, "cron"),
    "cron words": ({"mode": "cron", "cron": "abc"}, "cron"),
    "cron empty": ({"mode": "cron", "cron": ""}, "cron"),
    "cron never runs": ({"mode": "cron", "cron": "0 3 30 2 *"}, "cron"),
    "weekly no weekdays": ({"mode": "weekly", "time": "02:00"}, "weekdays"),
    "weekly empty weekdays": ({"mode": "weekly", "time": "02:00", "weekdays": []}, "weekdays"),
    "weekly unknown weekday": ({"mode": "weekly", "time": "02:00", "weekdays": ["mon", "xyz"]}, "weekdays"),
    "weekdays numbers": ({"mode": "weekly", "time": "02:00", "weekdays": [1, 2]}, "weekdays"),
    "time 24:00": ({"mode": "daily", "time": "24:00"}, "time"),
    "time 12:60": ({"mode": "daily", "time": "12:60"}, "time"),
    "time words": ({"mode": "daily", "time": "noon"}, "time"),
    "every 0 hours": ({"mode": "interval", "every_hours": 0}, "every_hours"),
    "every 169 hours": ({"mode": "interval", "every_hours": 169}, "every_hours"),
    "every -1 hours": ({"mode": "interval", "every_hours": -1}, "every_hours"),
    "unknown mode": ({"mode": "hourly"}, "mode"),
    "every_hours as string": ({"mode": "interval", "every_hours": "5"}, "every_hours"),
    "every_hours as float": ({"mode": "interval", "every_hours": 1.5}, "every_hours"),
    "every_hours as bool": ({"mode": "interval", "every_hours": True}, "every_hours"),
    "weekdays as string": ({"mode": "weekly", "time": "02:00", "weekdays": "mon"}, "weekdays"),
    "mode as number": ({"mode": 5}, "mode"),
    "mode as list": ({"mode": ["daily"], "time": "02:00"}, "mode"),
    "time as number": ({"mode": "daily", "time": 230}, "time"),
    "missing mode": ({"time": "02:00"}, "mode"),
    "null mode": ({"mode": None}, "mode"),
    "daily without time": ({"mode": "daily"}, "time"),
    "daily with null time": ({"mode": "daily", "time": None}, "time"),
    "weekly without time": ({"mode": "weekly", "weekdays": ["mon"]}, "time"),
    "cron without cron": ({"mode": "cron"}, "cron"),
    "interval without hours": ({"mode": "interval"}, "every_hours"),
    "unknown field": ({"mode": "daily", "time": "02:00", "hour": 2}, "hour"),
}


@pytest.fixture
def saved(client, db):
    """A schedule already saved, so that every test can see whether it changed."""
    assert client.post(f"{API}/scheduler/backup", json={"mode": "daily", "time": "03:15"}).status_code == 200
    return stored(db)


@pytest.mark.parametrize("case", INVALID)
def test_an_invalid_schedule_answers_400_naming_the_field_and_changes_nothing(client, db, saved, case):
    body, field = INVALID[case]

    response = client.post(f"{API}/scheduler/backup", json=body)
    answer = response.get_json()

    assert response.status_code == 400
    assert list(answer) == ["errors"]
    messages = answer["errors"].get(field)
    assert messages, answer
    assert all(isinstance(message, str) and message for message in messages)
    assert stored(db) == saved


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("[]", "application/json"),
        ('[{"mode": "daily", "time": "02:00"}]', "application/json"),
        ('"daily"', "application/json"),
        ("42", "application/json"),
        ("{not json", "application/json"),
        ("mode=daily&time=02:00", "application/x-www-form-urlencoded"),
        ('{"mode": "daily", "time": "02:00"}', "text/plain"),
    ],
)
def test_a_body_that_is_not_a_json_object_answers_400_and_changes_nothing(client, db, saved, data, content_type):
    response = client.post(f"{API}/scheduler/backup", data=data, content_type=content_type)

    assert response.status_code == 400
    assert response.get_json()["errors"]["json"]
    assert stored(db) == saved


# --- DELETE /settings/scheduler/backup ------------------------------------------------------


def test_delete_disables_the_schedule(client, db, saved):
    response = client.delete(f"{API}/scheduler/backup")
    job = response.get_json()

    assert response.status_code == 200
    assert job["schedule"] == {"mode": "disabled"}
    assert job["next_run_at"] is None
    assert stored(db) == ({"mode": "disabled"}, saved[1] + 1)


# --- POST /settings/scheduler/backup/run ----------------------------------------------------


def test_run_now_answers_202_at_once_and_the_run_finishes_with_a_file(app, client):
    response = client.post(f"{API}/scheduler/backup/run")
    run = response.get_json()["run"]

    assert response.status_code == 202
    assert run["status"] == "running"
    assert run["trigger"] == "manual"
    finished = wait_for_run(client, run["id"])
    assert finished["status"] == "success", finished["error"]
    assert (Path(app.config["BACKUPS_DIR"]) / finished["file"]).is_file()
    assert [path.name for path in backup_files(app)] == [finished["file"]]
    assert client.get(f"{API}/scheduler").get_json()["jobs"][0]["last_run"]["id"] == run["id"]


def test_an_unknown_run_is_not_found_as_json(client):
    response = client.get(f"{API}/scheduler/runs/999")

    assert response.status_code == 404
    assert response.get_json() == {"error": "Not found."}


def test_run_now_while_a_backup_holds_the_lock_answers_409_to_every_request(app, client):
    lock = backup_lock(Path(app.config["DATABASE_PATH"]))
    assert lock.try_acquire()
    try:
        answers = post_from_threads(app, f"{API}/scheduler/backup/run", 10)
    finally:
        lock.release()

    assert [answer.status_code for answer in answers] == [409] * 10
    assert all(answer.get_json()["error"] == "A backup is already running." for answer in answers)
    assert backup_files(app) == []

    response = client.post(f"{API}/scheduler/backup/run")
    assert response.status_code == 202
    assert wait_for_run(client, response.get_json()["run"]["id"])["status"] == "success"
    assert len(backup_files(app)) == 1


def fill_database(db, megabytes: int) -> None:
    """Make the database big enough that one backup takes a noticeable time."""
    with db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB)"))
        connection.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
                "INSERT INTO filler (data) SELECT randomblob(1048576) FROM n"
            ),
            {"count": megabytes},
        )


def test_ten_simultaneous_run_requests_start_exactly_one_backup(app, client, db):
    fill_database(db, megabytes=96)

    answers = post_from_threads(app, f"{API}/scheduler/backup/run", 10)

    statuses = sorted(answer.status_code for answer in answers)
    started = [answer.get_json()["run"] for answer in answers if answer.status_code == 202]
    for_busy = [answer.get_json() for answer in answers if answer.status_code == 409]
    # Wait before asserting, so a failed assertion never leaves a backup thread behind.
    finished = [wait_for_run(client, run["id"]) for run in started]
    assert statuses == [202] + [409] * 9
    assert all(answer["running"] is None or answer["running"]["id"] == started[0]["id"] for answer in for_busy)
    assert finished[0]["status"] == "success", finished[0]["error"]
    assert [path.name for path in backup_files(app)] == [finished[0]["file"]]


# --- GET /settings/scheduler/jobs -----------------------------------------------------------


def test_jobs_lists_one_job_per_task_with_the_one_entry_point(client):
    response = client.get(f"{API}/scheduler/jobs")
    body = response.get_json()

    assert response.status_code == 200
    assert [(job["id"], job["func"], job["args"]) for job in body["jobs"]] == [
        ("backup_db", "app.services.scheduler:run_scheduled_task", ["backup_db"]),
        ("verify_backups", "app.services.scheduler:run_scheduled_task", ["verify_backups"]),
    ]


def test_errors_under_the_api_are_json_even_when_no_route_matches(client):
    wrong_method = client.put(f"{API}/scheduler/backup", json={"mode": "disabled"})
    unknown_url = client.get(f"{API}/no-such-thing")
    too_big = client.post(f"{API}/scheduler/backup", json={"mode": "cron", "cron": "x" * 70_000})
    html_page = client.get("/settings/no-such-thing")

    assert (wrong_method.status_code, unknown_url.status_code, too_big.status_code) == (405, 404, 413)
    for response in (wrong_method, unknown_url, too_big):
        assert response.is_json
        assert response.get_json()["error"]
    assert "POST" in wrong_method.headers["Allow"]
    assert html_page.status_code == 404
    assert not html_page.is_json


# --- configuration and origin checks --------------------------------------------------------

SCHEDULER_ENDPOINTS = [
    ("GET", "/scheduler", None),
    ("POST", "/scheduler/backup", {"mode": "daily", "time": "02:00"}),
    ("DELETE", "/scheduler/backup", None),
    ("POST", "/scheduler/backup/run", None),
    ("GET", "/scheduler/runs/1", None),
    ("GET", "/scheduler/jobs", None),
]


def test_with_scheduling_turned_off_scheduler_endpoints_are_not_found_but_backup_db_works(make_app):
    app = make_app(SCHEDULER_ENABLED="false")
    client = app.test_client()

    for method, path, body in SCHEDULER_ENDPOINTS:
        response = client.open(f"{API}{path}", method=method, json=body)
        assert response.status_code == 404, (method, path)
        assert "error" in response.get_json()
    assert backup_files(app) == []
    response = client.post(f"{API}/backup-db")
    assert response.status_code == 200
    assert [path.name for path in backup_files(app)] == [response.get_json()["file"]]


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_request_from_another_site_is_refused_and_does_nothing(app, client, db, saved, site):
    headers = {"Sec-Fetch-Site": site}

    backup = client.post(f"{API}/backup-db", headers=headers)
    schedule = client.post(f"{API}/scheduler/backup", json={"mode": "interval", "every_hours": 2}, headers=headers)
    run = client.post(f"{API}/scheduler/backup/run", headers=headers)
    delete = client.delete(f"{API}/scheduler/backup", headers=headers)

    assert [backup.status_code, schedule.status_code, run.status_code, delete.status_code] == [403] * 4
    assert backup.get_json()["error"]
    assert backup_files(app) == []
    assert stored(db) == saved


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_a_request_from_the_same_origin_or_typed_by_hand_is_served(client, site):
    assert client.post(f"{API}/backup-db", headers={"Sec-Fetch-Site": site}).status_code == 200


def test_job_lists_the_next_five_runs_starting_at_next_run_at(client):
    job = client.post("/api/v1/settings/scheduler/backup", json={"mode": "daily", "time": "04:30"}).get_json()
    upcoming = [datetime.fromisoformat(moment) for moment in job["upcoming"]]
    assert len(upcoming) == 5
    assert job["upcoming"][0] == job["next_run_at"]
    assert all(moment.strftime("%H:%M") == "04:30" for moment in upcoming)
    assert upcoming == sorted(upcoming) and len({moment.date() for moment in upcoming}) == 5
