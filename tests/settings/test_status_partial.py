"""The polled status region: last run and result, progress, scheduler health, next run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from app.models import JobRun, SchedulerState, utcnow
from app.services import runs
from tests.settings.html_tree import oob_toast, parse
from tests.support.locks import backup_running
from tests.support.waiting import wait_for

BERLIN = ZoneInfo("Europe/Berlin")


def status_region(client):
    response = client.get("/settings/schedule/status", headers={"HX-Request": "true"})
    assert response.status_code == 200
    return parse(response.get_data(as_text=True)).by_id("status-backup_db")


def add_run(db, **values) -> None:
    values = {"task": "backup_db", "trigger": "manual"} | values
    with db.writer() as session:
        session.add(JobRun(**values))


def set_heartbeat(db, age: timedelta) -> None:
    beat = utcnow() - age
    with db.writer() as session:
        session.merge(
            SchedulerState(id=1, leader_pid=os.getpid(), leader_host="test", started_at=beat, heartbeat_at=beat)
        )


def scheduler_badge(region) -> str:
    return region.definition("Scheduler").find("span", class_="badge").text


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_never_run_says_never_and_shows_no_progress(client):
    region = status_region(client)

    assert region.definition("Last run").text == "Never"
    assert region.definition("Last result").text == "-"
    assert region.attrs["data-running"] == "false"
    assert region.find("progress") is None
    poll = parse(client.get("/settings/schedule/status", headers={"HX-Request": "true"}).get_data(as_text=True))
    assert "every" in poll.by_id("schedule-poll").attrs["hx-trigger"]  # it keeps polling


def test_a_running_backup_shows_since_when_and_its_progress(client, db):
    add_run(db, status="running", pid=os.getpid(), phase="copying", progress=40)

    region = status_region(client)

    assert region.attrs["data-running"] == "true"
    assert "Running since" in region.text
    progress = region.find("progress")
    assert progress.attrs["value"] == "40"
    assert progress.attrs["max"] == "100"
    assert region.definition("Last run").text == "Never"  # a running run is not a finished one


def test_a_running_row_whose_process_is_gone_is_not_shown_as_running(client, db):
    add_run(db, status="running", pid=dead_pid(), phase="copying", progress=40)

    region = status_region(client)

    assert region.attrs["data-running"] == "false"
    assert "Running since" not in region.text
    assert region.find("progress") is None


def test_a_successful_run_shows_result_file_size_and_duration(client, db):
    started = utcnow() - timedelta(minutes=10)
    name = "backup-20260101T000000.000000Z-manual.sqlite3"
    add_run(
        db,
        status="success",
        started_at=started,
        finished_at=started + timedelta(seconds=2.5),
        file=name,
        size=123_456,
        pid=os.getpid(),
    )

    region = status_region(client)

    result = region.definition("Last result")
    assert result.find("span", class_="badge").text == "Success"
    assert name in result.text
    assert region.definition("Size").text == "123.5 KB"
    assert region.definition("Duration").text == "2.5 s"
    last_run = region.definition("Last run")
    assert datetime.fromisoformat(last_run.find("time").attrs["datetime"]) == started
    assert "10 min ago" in last_run.text


def test_a_failed_run_shows_failed_and_the_error_message(client, db):
    started = utcnow() - timedelta(minutes=1)
    error = "The backup folder /srv/backups is full (no space left on device)."
    add_run(db, status="failed", started_at=started, finished_at=started + timedelta(seconds=1), error=error)

    region = status_region(client)

    result = region.definition("Last result")
    assert result.find("span", class_="badge").text == "Failed"
    assert error in result.text
    assert "Size" not in [term.text for term in region.find_all("dt")]  # no size for a failure


def test_scheduler_without_a_heartbeat_is_not_running(client):
    assert scheduler_badge(status_region(client)) == "Not running"


def test_scheduler_with_a_fresh_heartbeat_is_running(client, db):
    set_heartbeat(db, timedelta(seconds=0))

    assert scheduler_badge(status_region(client)) == "Running"


def test_scheduler_with_a_heartbeat_a_minute_old_is_not_running(client, db):
    set_heartbeat(db, timedelta(seconds=60))

    assert scheduler_badge(status_region(client)) == "Not running"


def test_after_saving_an_hourly_interval_the_next_run_is_an_hour_ahead_with_its_zone(client, htmx):
    saved_at = utcnow()
    assert (
        client.post(
            "/settings/schedule/backup_db", data={"mode": "interval", "every_hours": "1"}, headers=htmx
        ).status_code
        == 200
    )

    next_run = status_region(client).definition("Next run")

    moment = datetime.fromisoformat(next_run.find("time").attrs["datetime"])
    assert abs((moment - saved_at) - timedelta(hours=1)) < timedelta(seconds=30)
    assert moment.astimezone(BERLIN).tzname() in next_run.text  # CET or CEST
    assert re.search(r"\(in (1 h|59 min)\)", next_run.text)  # whole minutes, never rounded up


def test_a_disabled_schedule_has_no_next_run(client):
    assert "None (schedule disabled)" in status_region(client).definition("Next run").text


def test_with_scheduling_turned_off_the_page_says_so_and_schedule_actions_are_gone(make_app, htmx):
    app = make_app(SCHEDULER_ENABLED="false")
    client = app.test_client()

    page = parse(client.get("/settings").get_data(as_text=True))

    assert "Scheduling is turned off by configuration" in page.by_id("scheduler-off").text
    assert page.find(id="schedule-form-backup_db") is None
    assert client.post("/settings/schedule/backup_db", data={"mode": "daily", "time": "02:00"}).status_code == 404
    assert (
        client.post("/settings/schedule/backup_db", data={"mode": "daily", "time": "02:00"}, headers=htmx).status_code
        == 404
    )
    assert client.post("/settings/schedule/backup_db/run").status_code == 404
    assert client.post("/settings/schedule/backup_db/run", headers=htmx).status_code == 404
    assert client.post("/settings/backups", headers=htmx).status_code == 200
    assert len(list(Path(app.config["BACKUPS_DIR"]).glob("backup-*.sqlite3"))) == 1


def wait_until_idle(db, timeout: float = 10) -> JobRun:
    """The latest run once it is no longer running (so no thread outlives the test)."""
    return wait_for(
        lambda: (run := runs.latest_run(db, "backup_db")).status != "running" and run,
        timeout,
        message="the backup did not finish",
    )


def test_run_backup_now_answers_202_with_the_status_region_and_finishes_in_the_background(app, client, db, htmx):
    response = client.post("/settings/schedule/backup_db/run", headers=htmx)
    fragment = parse(response.get_data(as_text=True))

    assert response.status_code == 202
    assert fragment.elements[0].attrs["id"] == "status-backup_db"
    assert "Backup started" in oob_toast(fragment, "toasts").text
    run = wait_until_idle(db)
    assert run.status == "success", run.error
    assert (Path(app.config["BACKUPS_DIR"]) / run.file).is_file()
    result = status_region(client).definition("Last result")
    assert "Success" in result.text
    assert run.file in result.text


def test_run_backup_now_while_a_backup_holds_the_lock_answers_409(app, client, htmx):
    with backup_running(app):
        response = client.post("/settings/schedule/backup_db/run", headers=htmx)

    assert response.status_code == 409
    assert "A backup is already running" in oob_toast(parse(response.get_data(as_text=True)), "alerts").text


def test_a_missed_run_has_the_same_red_badge_in_the_status_and_the_history(client, db):
    add_run(db, status="missed", trigger="scheduled", error="The scheduler was not running.", finished_at=utcnow())

    result = status_region(client).definition("Last result").find("span", class_="badge")
    history = parse(
        client.get("/settings/schedule/backup_db/history", headers={"HX-Request": "true"}).get_data(as_text=True)
    )
    row_badge = history.by_id("history-backup_db").find("span", class_="badge")

    assert (result.text, result.classes) == ("Missed", ["badge", "bad"])
    assert (row_badge.text, row_badge.classes) == ("Missed", ["badge", "bad"])


def test_a_finished_run_is_announced_once_by_the_poll(client, db):
    add_run(db, status="running", pid=os.getpid())
    first = parse(
        client.get("/settings/schedule/status?after=0&watch=", headers={"HX-Request": "true"}).get_data(as_text=True)
    )
    poll = first.by_id("schedule-poll").attrs["hx-get"]
    assert "watch=1" in poll and oob_toast(first, "toasts") is None  # still running: nothing to tell yet
    with db.writer() as session:
        run = session.get(JobRun, 1)
        run.status, run.finished_at, run.file = "success", utcnow(), "backup-x.sqlite3"

    second = client.get(poll, headers={"HX-Request": "true"})
    third = client.get(
        parse(second.get_data(as_text=True)).by_id("schedule-poll").attrs["hx-get"], headers={"HX-Request": "true"}
    )

    assert "Backup finished: backup-x.sqlite3" in oob_toast(parse(second.get_data(as_text=True)), "toasts").text
    assert second.headers["HX-Trigger"] == "runs-finished"
    assert oob_toast(parse(third.get_data(as_text=True)), "toasts") is None
    assert "HX-Trigger" not in third.headers


def test_each_task_says_its_own_words_when_not_scheduled(client):
    poll = parse(client.get("/settings/schedule/status", headers={"HX-Request": "true"}).get_data(as_text=True))

    assert poll.by_id("status-backup_db").definition("Schedule").text == "No automatic backups."
    assert poll.by_id("status-verify_backups").definition("Schedule").text == "No automatic verifications."
