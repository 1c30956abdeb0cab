"""Issue 14: what a new user trips over, checked on the server-rendered pages and partials.

Each test names the defect it proves fixed (the issue's item number in brackets).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.models import JobRun, utcnow
from app.services.schedules import Schedule, save_schedule
from app.web import relative_time
from tests.settings.html_tree import oob_toast, parse
from tests.support.waiting import wait_for

HX = {"HX-Request": "true"}


def page(client):
    return parse(client.get("/settings").get_data(as_text=True))


def add_run(db, **values) -> None:
    values = {"task": "backup_db", "trigger": "manual", "status": "success"} | values
    with db.writer() as session:
        session.add(JobRun(**values))


def api_backup(client) -> str:
    response = client.post("/api/v1/settings/backup-db")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["file"]


# --- [1] one outcome per form, newest replaces the previous ---------------------------------


def test_toasts_name_the_form_they_answer_so_a_new_outcome_replaces_the_old_one_1(client, db):
    invalid = client.post("/settings/schedule/backup_db", data={"mode": "weekly", "time": "03:00"}, headers=HX)
    valid = client.post("/settings/schedule/backup_db", data={"mode": "interval", "every_hours": "6"}, headers=HX)

    error = oob_toast(parse(invalid.get_data(as_text=True)), "alerts").find(class_="toast")
    success = oob_toast(parse(valid.get_data(as_text=True)), "toasts").find(class_="toast")
    assert error.attrs.get("data-source") == success.attrs.get("data-source") == "schedule-form-backup_db"
    assert "fields marked below" not in error.text  # the toasts sit above the form, not below it


def test_toasts_are_in_the_page_flow_newest_first_not_over_the_content_1(client):
    document = page(client)
    region = document.find(class_="toasts")
    # Before the blocks, in the flow: a fixed stack bottom-right covered the history's File column.
    assert region.closest("main") is not None
    css = Path("static/css/app.css").read_text()
    assert "position: fixed" not in css.split(".toasts", 1)[1].split("}", 1)[0]


# --- [4] focus after delete ---------------------------------------------------------------------


def test_after_a_delete_the_next_rows_delete_link_is_marked_for_focus_4(app, client):
    first, second, third = api_backup(client), api_backup(client), api_backup(client)

    fragment = parse(client.post(f"/settings/backups/{second}/delete", headers=HX).get_data(as_text=True))

    marked = [element for element in fragment.iter() if "data-autofocus" in element.attrs]
    assert len(marked) == 1
    # Newest first: third, (second), first -> the row that took its place.
    assert marked[0].attrs.get("aria-label") == f"Delete {first}"
    assert third


def test_after_deleting_the_last_backup_the_empty_message_takes_focus_4(app, client):
    only = api_backup(client)

    fragment = parse(client.post(f"/settings/backups/{only}/delete", headers=HX).get_data(as_text=True))

    (marked,) = [e for e in fragment.iter() if "data-autofocus" in e.attrs]
    assert marked.attrs.get("tabindex") == "-1"
    assert "No backups yet" in marked.text


# --- [5] without JavaScript ---------------------------------------------------------------------


def test_without_javascript_a_flashed_message_can_be_dismissed_by_a_link_5(client):
    client.post("/settings/schedule/backup_db", data={"mode": "interval", "every_hours": "6"})
    document = page(client)

    toast = document.by_id("toasts").find(class_="toast")
    dismiss = toast.find("a", class_="toast-close")
    assert dismiss is not None and dismiss.attrs["href"] == "/settings"


def test_without_javascript_a_running_backup_page_refreshes_itself_and_offers_a_link_5(client, db):
    add_run(db, status="running", pid=os.getpid(), phase="finalizing")
    text = client.get("/settings").get_data(as_text=True)

    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in text
    status = parse(text).by_id("status-backup_db")
    assert any(a.attrs.get("href") == "/settings" for a in status.find_all("a"))


def test_a_finished_backup_page_does_not_refresh_itself_5(client, db):
    add_run(db)
    assert 'http-equiv="refresh"' not in client.get("/settings").get_data(as_text=True)


# --- [6] a broken backup folder -----------------------------------------------------------------


def test_a_backup_folder_that_is_a_file_is_reported_not_shown_as_empty_6(make_app, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    app = make_app(BACKUPS_DIR=str(blocker))

    block = parse(app.test_client().get("/settings/backups", headers=HX).get_data(as_text=True)).by_id("backups-block")

    assert "No backups yet" not in block.text
    problem = block.find(class_="folder-problem")
    assert problem is not None
    assert str(blocker) in problem.text
    assert "not a folder" in problem.text


# --- [7] is covered in Chromium (e2e/test_feedback.py) --------------------------------------


# --- [8] history and deleted files --------------------------------------------------------------


def test_history_links_files_that_exist_and_marks_deleted_ones_8(app, client, db):
    kept, gone = api_backup(client), api_backup(client)
    client.post(f"/settings/backups/{gone}/delete", headers=HX)

    history = parse(client.get("/settings/schedule/backup_db/history", headers=HX).get_data(as_text=True))

    links = {a.attrs["href"] for a in history.find_all("a")}
    assert f"/settings/backups/{kept}" in links
    assert f"/settings/backups/{gone}" not in links
    gone_cell = next(cell for cell in history.find_all("td", class_="filename") if gone in cell.text)
    assert "deleted" in gone_cell.text


# --- [9] the small text ----------------------------------------------------------------------------


def test_one_run_is_the_last_run_not_the_last_1_runs_9(client, db):
    add_run(db, finished_at=utcnow())
    caption = parse(client.get("/settings/schedule/backup_db/history", headers=HX).get_data(as_text=True)).find(
        "caption"
    )
    assert caption.text == "The last run"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(42, "in 42 s"), (-45, "45 s ago"), (-59, "59 s ago"), (-61, "1 min ago"), (3599, "in 59 min"), (0, "now")],
)
def test_relative_time_says_seconds_under_a_minute_and_never_rounds_up_9(seconds, expected):
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert relative_time(now + timedelta(seconds=seconds), now) == expected


def test_the_dst_hint_is_shown_only_for_zones_with_daylight_saving_9(make_app):
    for zone, shown in (("UTC", False), ("Asia/Tokyo", False), ("Europe/Berlin", True)):
        client = make_app(SCHEDULER_TIMEZONE=zone).test_client()
        fields = parse(client.get("/settings/schedule/backup_db/fields?mode=daily", headers=HX).get_data(as_text=True))
        assert ("when they go back" in fields.text) is shown, zone


def test_the_time_field_is_24_hour_text_not_a_locale_time_picker_9(client):
    fields = parse(client.get("/settings/schedule/backup_db/fields?mode=daily", headers=HX).get_data(as_text=True))
    time_input = fields.by_id("backup_db-time")
    assert time_input.attrs["type"] == "text"
    assert time_input.attrs.get("placeholder") == "HH:MM"
    assert "24-hour" in fields.text


def test_the_preview_refreshes_itself_when_its_first_listed_run_has_passed_9(client):
    now = datetime.now(UTC)
    preview = parse(client.get("/settings/schedule/backup_db/preview?mode=cron&cron=*+*+*+*+*").get_data(as_text=True))
    region = preview.by_id("schedule-preview-backup_db")

    first = datetime.fromisoformat(region.find("time").attrs["datetime"])
    trigger = region.attrs.get("hx-trigger", "")
    assert trigger.startswith("load delay:")
    delay = float(trigger.removeprefix("load delay:").removesuffix("s"))
    assert (first - now).total_seconds() <= delay <= (first - now).total_seconds() + 3
    assert region.attrs.get("hx-get", "").startswith("/settings/schedule/backup_db/preview")


# --- [10] both backup buttons behave alike --------------------------------------------------------


def test_backup_db_now_starts_a_background_run_like_run_backup_now_10(app, client, db):
    response = client.post("/settings/backups", headers=HX)

    assert response.status_code == 202
    toast = parse(response.get_data(as_text=True)).find(class_="toast")
    assert "Backup started" in toast.text
    assert toast.attrs.get("data-source") == "run-backup_db"
    assert "run-started" in response.headers.get("HX-Trigger", "")
    run = wait_for(lambda: (r := db_latest(db)) and r.status != "running" and r, 10)
    assert run.status == "success" and run.trigger == "manual"

    answer = client.post("/settings/schedule/backup_db/run", headers=HX)
    assert answer.status_code == 202
    assert parse(answer.get_data(as_text=True)).find(class_="toast").attrs.get("data-source") == "run-backup_db"
    wait_for(lambda: db_latest(db).status != "running", 10)


def db_latest(db):
    from app.services import runs

    return runs.latest_run(db, "backup_db")


def test_each_backup_button_says_where_it_belongs_10(client):
    document = page(client)
    assert "Run backup now" in document.by_id("backups-block").text  # points to its twin
    assert "Backup DB now" in document.by_id("schedule-block").text


# --- [11] retention, visible and editable ------------------------------------------------------


def test_the_page_says_how_many_automatic_backups_are_kept_and_that_manual_ones_stay_11(make_app):
    client = make_app(BACKUP_KEEP_LAST=7).test_client()
    block = page(client).by_id("backups-block")
    assert "7 newest automatic backups" in block.text
    assert "Manual backups are kept until you delete them" in block.text
    assert block.by_id("keep_last").attrs["value"] == "7"


def test_retention_is_saved_in_the_scheduler_tables_and_used_by_the_next_automatic_backup_11(app, client, db):
    response = client.post("/settings/retention", data={"keep_last": "2"}, headers=HX)
    assert response.status_code == 200
    assert "2 newest automatic backups" in parse(response.get_data(as_text=True)).by_id("backups-block").text

    from app.services.retention import keep_last
    from app.services.runner import claim_task, complete_task

    assert keep_last(app.config, db) == 2
    for _ in range(3):  # three scheduled runs, as the leader makes them
        run, lock = claim_task(app.config, db, "backup_db", "scheduled", None)
        complete_task(app.config, db, run, lock)
    automatic = sorted(Path(app.config["BACKUPS_DIR"]).glob("backup-*-auto.sqlite3"))
    assert len(automatic) == 2


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "10001", "٣", ""])
def test_retention_refuses_values_outside_1_to_10000_and_keeps_the_old_one_11(app, client, db, value):
    response = client.post("/settings/retention", data={"keep_last": value}, headers=HX)

    assert response.status_code == 422
    block = parse(response.get_data(as_text=True)).by_id("backups-block")
    assert block.by_id("keep_last").attrs.get("aria-invalid") == "true"
    from app.services.retention import keep_last

    assert keep_last(app.config, db) == app.config["BACKUP_KEEP_LAST"]


def test_a_disabled_schedule_saved_before_does_not_hide_retention_11(client, db):
    save_schedule(db, "backup_db", Schedule("disabled"))
    assert "newest automatic backups" in page(client).by_id("backups-block").text
