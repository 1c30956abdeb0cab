"""The "Manual testing" steps of docs/features/settings-scheduler.md, one test per step.

Test ``test_step_NN_<name>`` is step NN. Each starts its own app (gunicorn, 2 workers,
fresh instance folder) and sets up what the step assumes from earlier steps, through
the JSON API when the step is not about that part of the UI.
"""

from __future__ import annotations

import itertools
import re
import shutil
import sqlite3
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from e2e.support import (
    BACKUP_NAME,
    ZONE,
    ZONE_ABBREVIATION,
    add_ballast,
    alerts,
    assert_no_reload,
    backup_block,
    backup_section,
    choose_strategy,
    history_region,
    make_backup,
    mark_no_reload,
    now_local,
    open_settings,
    run_history,
    saved_schedule,
    schedule_block,
    seconds_to_next_minute,
    set_schedule,
    shown_time,
    status_region,
    status_value,
    toasts,
    unexpected_console_errors,
    wait_until_applied,
)
from tests.support.data import fill_items
from tests.support.receivers import HttpReceiver
from tests.support.server import free_port
from tests.support.waiting import wait_for

# Enough data that a backup takes over a second here, so "Running since" can be seen.
BALLAST_MEGABYTES = 400


def backup_rows(page):
    """The data rows of the backup table (the header row has no backup name)."""
    return backup_block(page).get_by_role("row").filter(has_text=BACKUP_NAME)


def history_rows(page):
    return history_region(page).get_by_role("row").filter(has_text=re.compile(r"\d{4}-\d{2}-\d{2}"))


def test_step_01_open_settings(live_server, page):
    open_settings(page, live_server, path="/")

    assert page.url == live_server.url + "/settings"
    expect(page.get_by_role("heading", name="Database backup", level=2)).to_be_visible()
    expect(page.get_by_role("heading", name="Schedule", level=2)).to_be_visible()
    strategy = backup_section(page).get_by_label("Strategy")
    expect(strategy).to_have_value("disabled")
    expect(strategy.locator("option:checked")).to_have_text("Disabled")
    expect(status_value(page, "Scheduler")).to_have_text("Running")
    expect(status_value(page, "Next run")).to_have_text("None (schedule disabled)")
    expect(status_value(page, "Last run")).to_have_text("Never")
    expect(backup_block(page).get_by_text("No backups yet")).to_be_visible()
    assert page.console_errors == []


def test_step_02_backup_db_now(settings_page, live_server):
    page = settings_page
    mark_no_reload(page)

    page.get_by_role("button", name="Backup DB now").click()

    # The doc promises "within a second" for this tiny database; 3 s leaves room for a busy 2-core CI.
    expect(toasts(page)).to_contain_text("Backup finished: backup-", timeout=3_000)
    # It runs in the background like "Run backup now": its outcome replaces "Backup started"
    # (one action, one message).
    expect(history_rows(page)).to_have_count(1)
    expect(toasts(page).locator("[data-toast]")).to_have_count(1)
    rows = backup_rows(page)
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_role("cell").first).to_have_accessible_name("Manual")
    name = rows.first.get_by_role("rowheader").inner_text()
    assert re.fullmatch(r"backup-\d{8}T\d{6}\.\d{6}Z-manual\.sqlite3", name)
    on_disk = live_server.instance / "backups" / name
    assert [p.name for p in on_disk.parent.glob("backup-*")] == [name]
    assert stat.S_IMODE(on_disk.stat().st_mode) == 0o600, "readable by its owner only"
    assert_no_reload(page)
    assert page.console_errors == []


def test_step_03_every_1_hour(settings_page):
    page = settings_page

    choose_strategy(page, "Every N hours")

    fields = page.locator("#schedule-fields-backup_db")
    expect(fields.get_by_role("spinbutton", name="Every N hours")).to_be_visible()
    expect(fields.get_by_label("Time of day")).to_have_count(0)
    expect(fields.get_by_label("Cron expression")).to_have_count(0)
    expect(fields.get_by_role("group", name="Weekdays")).to_have_count(0)

    backup_section(page).get_by_label("Every N hours").fill("1")
    saved_at = datetime.now(ZONE)
    backup_section(page).get_by_role("button", name="Save schedule").click()

    expect(toasts(page)).to_contain_text("Database backup schedule saved: Every hour.")
    next_run = status_value(page, "Next run")
    expect(next_run).to_contain_text(re.compile(r"in (1 h|59 min)\)"))
    expect(next_run).to_contain_text(ZONE_ABBREVIATION)
    expect(next_run).not_to_contain_text("applying", timeout=10_000)  # the leader took it over
    ahead = shown_time(next_run) - saved_at
    assert timedelta(minutes=59) <= ahead <= timedelta(minutes=61), ahead
    assert page.console_errors == []


def test_step_04_daily_at_a_near_time(settings_page):
    page = settings_page
    target = (now_local() + timedelta(minutes=2)).replace(second=0, microsecond=0)

    choose_strategy(page, "Daily")
    backup_section(page).get_by_label("Time of day").fill(target.strftime("%H:%M"))
    backup_section(page).get_by_role("button", name="Save schedule").click()

    expect(toasts(page)).to_contain_text(f"Database backup schedule saved: Every day at {target:%H:%M}.")
    next_run = status_value(page, "Next run")
    # Between one and two minutes ahead: "in 2 min", or "in 1 min" late in the current minute.
    expect(next_run).to_contain_text(re.compile(rf"{target:%Y-%m-%d %H:%M} CES?T\s+\(in [12] min\)"))
    assert shown_time(next_run) == target
    assert page.console_errors == []


@pytest.fixture
def slow_backup_server(start_server):
    """An app whose database is big enough that a backup runs for a visible moment."""
    server = start_server(prepare=lambda instance: add_ballast(instance / "app.db", BALLAST_MEGABYTES))
    yield server
    server.stop()
    shutil.rmtree(server.instance, ignore_errors=True)  # don't keep a gigabyte of test data around


@pytest.mark.xdist_group("big-database")
def test_step_05_run_backup_now(slow_backup_server, page):
    server = slow_backup_server
    first = make_backup(server)  # step 2's backup
    open_settings(page, server)
    mark_no_reload(page)
    expect(history_rows(page)).to_have_count(1)

    page.get_by_role("button", name="Run backup now").click()

    expect(toasts(page)).to_contain_text("Backup started")
    status = status_region(page)
    expect(status.get_by_text("Running since")).to_be_visible()
    expect(status.get_by_role("progressbar")).to_be_visible()
    expect(page.get_by_role("button", name="Run backup now")).to_have_attribute("aria-disabled", "true")

    # The end of the run, not "Success": that already showed step 2's backup.
    expect(status.get_by_text("Running since")).to_have_count(0, timeout=30_000)
    last_result = status_value(page, "Last result")
    expect(last_result).to_contain_text("Success")
    second = BACKUP_NAME.search(last_result.inner_text()).group(0)
    expect(toasts(page)).to_contain_text(f"Backup finished: {second}")
    assert second != first and second.endswith("-manual.sqlite3")
    assert second[7:29] != first[7:29], "the two backups carry distinct timestamps"
    expect(backup_rows(page)).to_have_count(2)
    expect(backup_rows(page).filter(has_text=second)).to_contain_text("Manual")
    expect(history_rows(page)).to_have_count(2)
    newest = history_rows(page).first
    expect(newest).to_contain_text("Manual")
    expect(newest).to_contain_text("Success")
    expect(newest).to_contain_text(second)
    expect(page.get_by_role("button", name="Run backup now")).not_to_have_attribute("aria-disabled", "true")
    assert_no_reload(page)
    assert page.console_errors == []


@pytest.mark.slow
def test_step_06_wait_for_a_scheduled_run(settings_page, live_server):
    page = settings_page
    mark_no_reload(page)

    choose_strategy(page, "Cron expression")
    backup_section(page).get_by_label("Cron expression").press_sequentially("* * * * *")

    preview = page.locator("#schedule-preview-backup_db")
    expect(preview).to_contain_text("Every minute")
    upcoming = preview.get_by_role("listitem")
    expect(upcoming).to_have_count(5)
    moments = [shown_time(item) for item in upcoming.all()]
    assert all(later - earlier == timedelta(minutes=1) for earlier, later in itertools.pairwise(moments))
    # The first is the next full minute (a boundary may have passed since the help was drawn).
    assert timedelta(seconds=-10) < moments[0] - datetime.now(ZONE) <= timedelta(minutes=1, seconds=5)
    backup_section(page).get_by_role("button", name="Save schedule").click()
    expect(toasts(page)).to_contain_text("Database backup schedule saved: Every minute.")

    # The one real-minute wait of this step: the next full minute (the one after, when the
    # leader applies the schedule, ~2 s, only after the boundary), the backup and a status
    # poll (every 3 s). The check returns as soon as the run shows.
    last_run = status_value(page, "Last run")
    expect(last_run).to_contain_text("scheduled", timeout=(seconds_to_next_minute() + 75) * 1000)
    expect(status_value(page, "Last result")).to_contain_text("Success")
    expect(toasts(page)).to_contain_text("Backup finished")
    expect(backup_rows(page).filter(has_text="Automatic")).to_have_count(1)
    automatic = list((live_server.instance / "backups").glob("backup-*-auto.sqlite3"))
    assert len(automatic) == 1
    expect(backup_rows(page).filter(has_text="Automatic")).to_contain_text(automatic[0].name)
    expect(history_rows(page).first).to_contain_text("Scheduled")
    assert_no_reload(page)
    assert page.console_errors == []


def next_weekly_run(now: datetime, weekdays: set[int], hour: int, minute: int) -> datetime:
    """The first of ``weekdays`` (Monday = 0) at hour:minute after ``now``, in the app's zone."""
    for offset in range(8):
        day = (now + timedelta(days=offset)).date()
        moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE)
        if moment.weekday() in weekdays and moment > now:
            return moment
    raise AssertionError("unreachable")


def test_step_07_weekly(settings_page):
    page = settings_page

    choose_strategy(page, "Weekly")
    backup_section(page).get_by_role("checkbox", name="Monday").check()
    backup_section(page).get_by_role("checkbox", name="Thursday").check()
    backup_section(page).get_by_label("Time of day").fill("03:15")
    backup_section(page).get_by_role("button", name="Save schedule").click()

    expect(toasts(page)).to_contain_text("Database backup schedule saved: Every Monday and Thursday at 03:15.")
    expect(status_value(page, "Schedule")).to_have_text("Every Monday and Thursday at 03:15")
    next_run = status_value(page, "Next run")
    expected = next_weekly_run(now_local(), {0, 3}, 3, 15)
    expect(next_run).to_contain_text(f"{expected:%Y-%m-%d} 03:15")
    assert shown_time(next_run) == expected
    assert page.console_errors == []


def test_step_08_invalid_cron(live_server, page):
    set_schedule(live_server, mode="weekly", weekdays=["mon", "thu"], time="03:15")  # step 7's schedule
    open_settings(page, live_server)
    expect(status_value(page, "Schedule")).to_have_text("Every Monday and Thursday at 03:15")

    choose_strategy(page, "Cron expression")
    cron = backup_section(page).get_by_label("Cron expression")
    cron.press_sequentially("61 * * * *")
    expect(page.locator("#schedule-preview-backup_db")).to_contain_text("Invalid minute field '61'")

    backup_section(page).get_by_role("button", name="Save schedule").click()

    message = re.compile(r"Invalid minute field '61'")
    expect(cron).to_have_attribute("aria-invalid", "true")
    expect(cron).to_have_accessible_description(message)  # the error next to the field, tied to it
    summary = schedule_block(page).get_by_role("alert").filter(has_text="The Database backup schedule was not saved")
    expect(summary.get_by_role("link", name=message)).to_have_attribute("href", "#backup_db-cron")
    assert summary.bounding_box()["y"] < cron.bounding_box()["y"], "the summary is above the form's fields"
    expect(cron).to_have_value("61 * * * *")
    expect(alerts(page)).to_contain_text("The Database backup schedule was not saved")
    expect(status_value(page, "Schedule")).to_have_text("Every Monday and Thursday at 03:15")
    assert saved_schedule(live_server)["mode"] == "weekly"  # nothing was saved
    assert unexpected_console_errors(page) == []


@pytest.mark.slow
def test_step_09_disabled(live_server, page):
    # A schedule that would fire at the next full minute, so a disable that failed would
    # show. Set it early in a minute, so that it cannot fire before it is disabled.
    if seconds_to_next_minute() < 15:
        page.wait_for_timeout(seconds_to_next_minute(margin=1) * 1000)
    set_schedule(live_server, mode="cron", cron="* * * * *")
    open_settings(page, live_server)
    mark_no_reload(page)

    choose_strategy(page, "Disabled")
    backup_section(page).get_by_role("button", name="Save schedule").click()

    expect(toasts(page)).to_contain_text("Database backup schedule saved")
    expect(status_value(page, "Next run")).to_have_text("None (schedule disabled)")
    wait_until_applied(live_server)
    assert run_history(live_server) == []
    expect(status_value(page, "Last run")).to_have_text("Never")

    # The one real-minute wait of this step: past the next full minute, plus two status
    # polls (3 s each). Nothing can be awaited here: the point is that nothing happens.
    page.wait_for_timeout(seconds_to_next_minute(margin=7) * 1000)

    assert run_history(live_server) == []
    expect(status_value(page, "Last run")).to_have_text("Never")
    expect(history_region(page).get_by_text("No runs yet.")).to_be_visible()
    expect(status_value(page, "Next run")).to_have_text("None (schedule disabled)")
    assert not list((live_server.instance / "backups").glob("backup-*-auto.sqlite3"))
    assert_no_reload(page)
    assert page.console_errors == []


def test_step_10_restart_keeps_the_schedule(settings_page, live_server):
    page = settings_page
    choose_strategy(page, "Daily")
    backup_section(page).get_by_label("Time of day").fill("04:00")
    backup_section(page).get_by_role("button", name="Save schedule").click()
    next_run = status_value(page, "Next run")
    expect(next_run).to_contain_text("04:00")
    expect(next_run).not_to_contain_text("applying", timeout=10_000)
    before = next_run.locator("time").inner_text()
    before_at = shown_time(next_run)

    live_server.stop()
    live_server.start()
    page.reload()

    expect(backup_section(page).get_by_label("Strategy")).to_have_value("daily")
    expect(backup_section(page).get_by_label("Time of day")).to_have_value("04:00")
    expect(next_run.locator("time")).to_have_text(before)
    assert shown_time(next_run) == before_at
    expect(status_value(page, "Scheduler")).to_have_text("Running", timeout=10_000)


def test_step_11_a_failing_backup_shows_its_error(start_server, page, tmp_path):
    (tmp_path / "afile").write_text("a regular file, not a folder\n")
    folder = (tmp_path / "afile" / "backups").resolve()
    server = start_server(BACKUPS_DIR=str(folder))
    open_settings(page, server)
    mark_no_reload(page)

    page.get_by_role("button", name="Run backup now").click()

    last_result = status_value(page, "Last result")
    expect(last_result).to_contain_text("Failed", timeout=10_000)
    expect(last_result).to_contain_text(str(folder))
    error = re.sub(r"^\s*Failed\s*", "", last_result.inner_text())
    row = history_rows(page).first
    expect(row).to_contain_text("Manual")
    expect(row).to_contain_text("Failed")
    expect(row).to_contain_text(error)
    expect(alerts(page)).to_contain_text(f"Backup failed: {error}")

    # The page keeps working: other controls still answer, and say what went wrong.
    choose_strategy(page, "Daily")
    page.get_by_role("button", name="Backup DB now").click()
    expect(history_rows(page)).to_have_count(2)
    # The second failure replaces the first message: one toast per action, the newest.
    expect(alerts(page).get_by_text(f"Backup failed: {error}")).to_have_count(1)
    expect(backup_block(page).locator(".folder-problem")).to_contain_text("is a file, not a folder")
    expect(backup_block(page).get_by_text("No backups yet")).to_have_count(0)
    assert_no_reload(page)
    assert page.console_errors == []


def test_step_12_delete_a_backup(live_server, page):
    keep = make_backup(live_server)
    doomed = make_backup(live_server)
    open_settings(page, live_server)
    expect(backup_rows(page)).to_have_count(2)
    dialogs: list[str] = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    backup_rows(page).filter(has_text=doomed).get_by_role("link", name=f"Delete {doomed}").click()

    expect(backup_rows(page).filter(has_text=doomed)).to_have_count(0)
    expect(backup_rows(page).filter(has_text=keep)).to_have_count(1)
    expect(toasts(page)).to_contain_text(f"Backup {doomed} deleted.")
    assert dialogs == [f"Delete backup {doomed}? This cannot be undone."]
    folder = live_server.instance / "backups"
    assert not (folder / doomed).exists()
    assert (folder / keep).exists()
    assert page.console_errors == []


def data_labels(server) -> list[str]:
    """The labels of the rows in the live data's ``item`` table."""
    with sqlite3.connect(server.instance / "app.db") as conn:
        labels = [row[0] for row in conn.execute("SELECT label FROM item ORDER BY id")]
    conn.close()
    return labels


def restore_through_the_page(page, name: str, screenshots: Path | None = None) -> None:
    """Click "Restore" on ``name``'s row, type its name, confirm; wait for "Restore finished"."""
    backup_rows(page).filter(has_text=name).get_by_role("link", name=f"Restore {name}").click()
    expect(page.get_by_role("heading", name="Restore backup?", level=1)).to_be_visible()
    field = page.get_by_label("Type the backup name to confirm")
    field.fill("backup")
    page.get_by_role("button", name="Restore this backup").click()
    expect(page.locator("#confirm-error")).to_contain_text(f"Type the backup's exact name, {name}")
    expect(field).to_have_value("backup")
    if screenshots is not None:
        for width in (1280, 360):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=screenshots / f"restore-confirm-{width}.png", full_page=True, caret="initial")
    field.fill(name)
    page.get_by_role("button", name="Restore this backup").click()
    expect(toasts(page)).to_contain_text(f"Restoring {name}")
    expect(toasts(page)).to_contain_text(
        f"Restore finished: {name}. Safety backup of the previous data:", timeout=30_000
    )
    expect(status_value(page, "Last result")).to_contain_text(f"Restored {name}")


def test_step_13_restore_a_listed_backup(live_server, page, pytestconfig):
    fill_items(live_server.instance / "app.db", 3, label="backed up")
    name = make_backup(live_server)
    fill_items(live_server.instance / "app.db", 2, label="added later")
    open_settings(page, live_server)
    folder = pytestconfig.rootpath / pytestconfig.getoption("--output") / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)

    restore_through_the_page(page, name, screenshots=folder)

    assert data_labels(live_server) == ["backed up"] * 3
    safety = backup_rows(page).filter(has_text="pre-restore")
    expect(safety).to_have_count(1)
    expect(safety).to_contain_text("Safety (before a restore)")
    expect(history_rows(page).first).to_contain_text("Restore")
    for width in (1280, 360):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=folder / f"restore-finished-{width}.png", full_page=True, caret="initial")
    assert unexpected_console_errors(page) == []


def test_step_14_upload_and_restore(live_server, page, tmp_path):
    fill_items(live_server.instance / "app.db", 4, label="live")
    mine = tmp_path / "from-another-machine.sqlite3"
    fill_items(mine, 6, label="uploaded")
    open_settings(page, live_server)

    page.get_by_label("Backup file").set_input_files(str(mine))
    page.get_by_role("button", name="Upload backup").click()

    expect(toasts(page)).to_contain_text("passed every check")
    uploaded = backup_rows(page).filter(has_text="-uploaded.sqlite3")
    expect(uploaded).to_have_count(1)
    expect(uploaded).to_contain_text("Uploaded")
    name = BACKUP_NAME.search(uploaded.inner_text()).group(0)
    restore_through_the_page(page, name)
    assert data_labels(live_server) == ["uploaded"] * 6
    assert unexpected_console_errors(page) == []


def test_step_15_a_refused_garbage_upload(live_server, page, tmp_path):
    kept = make_backup(live_server)
    garbage = tmp_path / "notes.txt"
    garbage.write_text("these are not the backups you are looking for\n" * 100)
    open_settings(page, live_server)

    page.get_by_label("Backup file").set_input_files(str(garbage))
    page.get_by_role("button", name="Upload backup").click()

    expect(page.locator("#file-error")).to_contain_text("notes.txt: The file is not a SQLite database")
    expect(page.get_by_label("Backup file")).to_have_attribute("aria-invalid", "true")
    expect(alerts(page)).to_contain_text("The upload was refused and nothing was kept")
    expect(backup_rows(page)).to_have_count(1)
    expect(backup_rows(page).filter(has_text=kept)).to_have_count(1)
    assert sorted(path.name for path in (live_server.instance / "backups").iterdir()) == [kept]


def notifications_block(page):
    return page.get_by_role("region", name="Notifications")


def send_rows(page):
    return page.locator("#notification-sends tbody tr")


def counted_runs(server) -> list[int]:
    """The last run the notification state took into account, per subject."""
    with sqlite3.connect(server.instance / "state.db", timeout=10) as connection:
        rows = connection.execute("SELECT last_run_id FROM notification_state").fetchall()
    connection.close()
    return [row[0] for row in rows]


def test_step_16_configure_a_webhook(live_server, page):
    with HttpReceiver() as webhook:
        open_settings(page, live_server)
        block = notifications_block(page)
        urls = block.get_by_label("Notification URLs")
        urls.fill(f"json://127.0.0.1:{webhook.port}/hook\nnosuchscheme://example.org/x")
        block.get_by_role("button", name="Save notifications").click()

        expect(block.locator(".field-error").first).to_contain_text(
            "Line 2 (nosuchscheme://…) is not a notification URL Apprise accepts"
        )
        expect(block.get_by_label("Notification URLs")).to_have_value(
            f"json://127.0.0.1:{webhook.port}/hook\nnosuchscheme://example.org/x"
        )
        expect(alerts(page)).to_contain_text("The notification settings were not saved")
        assert live_server.request("GET", "/api/v1/settings/notifications")[1]["urls"] == []

        block.get_by_label("Notification URLs").fill(f"json://127.0.0.1:{webhook.port}/hook")
        block.get_by_role("button", name="Save notifications").click()
        expect(toasts(page)).to_contain_text("Notification settings saved: 1 URL(s).")
        expect(send_rows(page)).to_have_count(1)
        expect(send_rows(page).first).to_contain_text(f"json://127.0.0.1:{webhook.port}/hook")
        expect(send_rows(page).first).to_contain_text("Never")
        assert webhook.requests == []
    assert unexpected_console_errors(page) == []


def test_step_17_send_a_test_notification(live_server, page, pytestconfig):
    down = f"json://127.0.0.1:{free_port()}/hook"
    with HttpReceiver() as webhook:
        code, body = live_server.request(
            "PUT",
            "/api/v1/settings/notifications",
            {"urls": [f"json://127.0.0.1:{webhook.port}/hook"], "events": ["run_failed"], "ping_url": None},
        )
        assert code == 200, body
        open_settings(page, live_server)
        block = notifications_block(page)
        urls = block.get_by_label("Notification URLs")
        urls.fill(urls.input_value() + "\n" + down)
        block.get_by_role("button", name="Save notifications").click()
        expect(toasts(page)).to_contain_text("Notification settings saved: 2 URL(s).")

        page.get_by_role("button", name="Send test notification").click()

        expect(alerts(page)).to_contain_text("Test notification failed for 1 of 2 URL(s)")
        expect(send_rows(page).nth(0)).to_contain_text("OK")
        expect(send_rows(page).nth(1)).to_contain_text("Failed: A Connection error occurred")
        (post,) = webhook.posts()
        assert post.json()["title"] == "Backups: test notification"
        folder = pytestconfig.rootpath / "e2e" / "artifacts" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.evaluate("document.querySelectorAll('#toasts > *, #alerts > *').forEach(t => t.remove())")
        block.screenshot(path=folder / "notifications-failed-1280.png", caret="initial")
    assert unexpected_console_errors(page) == []


def test_step_18_see_a_failure_notification(start_server, page, tmp_path):
    (tmp_path / "afile").write_text("a regular file, not a folder\n")
    folder = (tmp_path / "afile" / "backups").resolve()
    server = start_server(BACKUPS_DIR=str(folder), PUBLIC_URL="http://backups.example.org")
    with HttpReceiver() as webhook:
        code, body = server.request(
            "PUT",
            "/api/v1/settings/notifications",
            {"urls": [f"json://127.0.0.1:{webhook.port}/hook"], "events": ["run_failed"], "ping_url": None},
        )
        assert code == 200, body
        open_settings(page, server)

        page.get_by_role("button", name="Run backup now").click()
        expect(status_value(page, "Last result")).to_contain_text("Failed", timeout=10_000)
        wait_for(webhook.posts, timeout=10)
        page.get_by_role("button", name="Run backup now").click()
        expect(history_rows(page)).to_have_count(2, timeout=10_000)

        message = webhook.posts()[0].json()
        assert message["title"] == "Backups: Database backup failed"
        assert str(folder) in message["message"]
        assert re.search(r"When: \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} CES?T \(Europe/Berlin\)", message["message"])
        assert "Settings: http://backups.example.org/settings" in message["message"]
        page.reload()
        expect(send_rows(page).first).to_contain_text("(run_failed)")
        expect(send_rows(page).first).to_contain_text("OK")
        wait_for(lambda: counted_runs(server) == [2], timeout=10)  # the second failure was taken into account
        assert len(webhook.posts()) == 1  # ... and it is the same state: no second message
    assert unexpected_console_errors(page) == []


def verification_section(page):
    return backup_section(page, "Backup verification")


def test_step_19_verify_backups(live_server, page, pytestconfig):
    first, second = make_backup(live_server), make_backup(live_server)
    open_settings(page, live_server)
    section = verification_section(page)
    expect(section.get_by_role("heading", name="Backup verification", exact=True)).to_be_visible()

    section.get_by_label("Strategy").select_option(label="Weekly")
    expect(section.get_by_role("group", name="Weekdays")).to_be_visible()
    section.get_by_role("checkbox", name="Sunday").check()
    section.get_by_label("Time of day").fill("04:00")
    section.get_by_role("button", name="Save schedule").click()
    expect(toasts(page)).to_contain_text("Backup verification schedule saved: Every Sunday at 04:00.")
    expect(status_value(page, "Next run", "Backup verification")).to_contain_text("04:00")

    section.get_by_role("button", name="Run verification now").click()
    expect(toasts(page)).to_contain_text("Verification finished: 2 backup(s) verified.", timeout=10_000)
    expect(status_value(page, "Last result", "Backup verification")).to_contain_text("Success")
    expect(history_region(page, "Backup verification").get_by_role("row").nth(1)).to_contain_text("Manual")
    for name in (first, second):
        expect(backup_rows(page).filter(has_text=name).locator("time").nth(1)).to_be_visible()  # Verified
    folder = pytestconfig.rootpath / pytestconfig.getoption("--output") / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    for width in (1280, 360):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=folder / f"schedule-two-tasks-{width}.png", full_page=True, caret="initial")
    assert unexpected_console_errors(page) == []


def test_step_20_a_damaged_backup_is_caught(live_server, page):
    name = make_backup(live_server)
    path = live_server.instance / "backups" / name
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    open_settings(page, live_server)

    verification_section(page).get_by_role("button", name="Run verification now").click()

    expect(alerts(page)).to_contain_text(
        f"Verification failed: 1 of 1 backup(s) failed verification: {name}", timeout=10_000
    )
    expect(status_value(page, "Last result", "Backup verification")).to_contain_text("Failed")
    expect(backup_rows(page).filter(has_text=name)).to_contain_text("Damaged")
    code, body = live_server.request("GET", "/healthz")
    assert code == 503
    assert any(reason.startswith("The last Backup verification run failed:") for reason in body["reasons"])
