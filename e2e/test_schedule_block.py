"""Issue 4's acceptance points for the "Schedule" block, in a real Chromium against the real app."""

from __future__ import annotations

import fcntl
import re
from datetime import datetime
from pathlib import Path

from playwright.sync_api import Page, expect

from e2e.support import (
    ZONE,
    alerts,
    backup_section,
    choose_strategy,
    make_backup,
    open_settings,
    run_history,
    saved_schedule,
    schedule_block,
    shown_time,
    status_value,
    toasts,
    unexpected_console_errors,
)

DESKTOP, PHONE = 1280, 360


def test_daily_schedule_is_saved_without_javascript(live_server, new_context):
    page = new_context(java_script_enabled=False).new_page()
    page.goto(live_server.url + "/settings")
    expect(backup_section(page).get_by_label("Time of day")).to_have_count(0)

    backup_section(page).get_by_label("Strategy").select_option(label="Daily")
    backup_section(page).get_by_role("button", name="Show fields for this strategy").click()
    backup_section(page).get_by_label("Time of day").fill("07:30")
    backup_section(page).get_by_role("button", name="Save schedule").click()

    assert page.url == live_server.url + "/settings"  # redirected after the POST
    expect(toasts(page)).to_contain_text("Database backup schedule saved: Every day at 07:30.")
    expect(backup_section(page).get_by_label("Strategy")).to_have_value("daily")
    expect(backup_section(page).get_by_label("Time of day")).to_have_value("07:30")
    expect(status_value(page, "Schedule")).to_have_text("Every day at 07:30")
    expect(status_value(page, "Next run")).to_contain_text("07:30")
    assert saved_schedule(live_server) == {"mode": "daily", "time": "07:30"}


def test_run_now_while_a_backup_runs_says_a_backup_is_already_running(settings_page, live_server):
    page = settings_page
    # Another process holds the single-flight backup lock, as a running backup does.
    with open(live_server.instance / "app.db.backup.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        page.get_by_role("button", name="Run backup now").click()
        expect(alerts(page)).to_contain_text("A backup is already running.")
        expect(status_value(page, "Last run")).to_have_text("Never")
        assert run_history(live_server) == []

    # Once it is released, the same button works.
    page.get_by_role("button", name="Run backup now").click()
    expect(status_value(page, "Last result")).to_contain_text("Success", timeout=10_000)
    assert unexpected_console_errors(page) == []


def test_cron_preview_describes_the_expression_and_its_next_five_runs_as_you_type(settings_page):
    page = settings_page
    choose_strategy(page, "Cron expression")
    cron = backup_section(page).get_by_label("Cron expression")
    preview = page.locator("#schedule-preview-backup_db")

    cron.press_sequentially("30 2 * * 1-5")

    expect(preview).to_contain_text("At 02:30, Monday through Friday")
    runs = preview.get_by_role("listitem")
    expect(runs).to_have_count(5)
    moments = [shown_time(item).astimezone(ZONE) for item in runs.all()]
    assert moments == sorted(moments) and moments[0] > datetime.now(ZONE)
    assert all((moment.hour, moment.minute, moment.weekday() < 5) == (2, 30, True) for moment in moments)
    expect(preview).to_contain_text("Next runs (Europe/Berlin)")

    cron.fill("")
    cron.press_sequentially("0 */6 * * *")
    expect(preview).not_to_contain_text("Monday through Friday")
    expect(runs).to_have_count(5)
    moments = [shown_time(item).astimezone(ZONE) for item in runs.all()]
    assert all(moment.hour % 6 == 0 and moment.minute == 0 for moment in moments), moments

    cron.fill("30 2 * *")
    expect(preview).to_contain_text(re.compile(r"five fields|5 fields", re.IGNORECASE))
    expect(preview.get_by_role("listitem")).to_have_count(0)
    expect(status_value(page, "Schedule")).to_have_text(re.compile(r"^No automatic backups"))  # nothing saved


def screenshot(page: Page, folder: Path, name: str) -> None:
    # caret="initial": hiding the text caret (the default) injects a style element, which the
    # app's Content-Security-Policy blocks and Chromium logs as a console error.
    page.screenshot(path=folder / f"{name}.png", full_page=True, caret="initial")


# The outermost elements that stick out to the right of the viewport, to name the culprit.
WIDE_ELEMENTS = """() => [...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > innerWidth + 0.5
                 && e.parentElement.getBoundingClientRect().right <= innerWidth + 0.5)
  .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}: right edge ${e.getBoundingClientRect().right}`)"""


def assert_no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE, (
        f"the page scrolls sideways at {PHONE} px (scrollWidth {width}): {page.evaluate(WIDE_ELEMENTS)}"
    )


def test_screenshots_of_success_and_error_at_desktop_and_phone_widths(live_server, page, pytestconfig):
    folder = pytestconfig.rootpath / pytestconfig.getoption("--output") / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    make_backup(live_server)
    make_backup(live_server)
    page.set_viewport_size({"width": DESKTOP, "height": 900})
    open_settings(page, live_server)

    # Success: a schedule saved and a backup run, both announced.
    choose_strategy(page, "Weekly")
    backup_section(page).get_by_role("checkbox", name="Monday").check()
    backup_section(page).get_by_role("checkbox", name="Thursday").check()
    backup_section(page).get_by_label("Time of day").fill("03:15")
    backup_section(page).get_by_role("button", name="Save schedule").click()
    expect(toasts(page)).to_contain_text("Database backup schedule saved")
    page.get_by_role("button", name="Run backup now").click()
    expect(status_value(page, "Last result")).to_contain_text("Success", timeout=10_000)
    expect(toasts(page)).to_contain_text("Backup finished")
    screenshot(page, folder, f"settings-success-{DESKTOP}")
    page.set_viewport_size({"width": PHONE, "height": 800})
    expect(schedule_block(page)).to_be_visible()
    assert_no_horizontal_scroll(page)
    screenshot(page, folder, f"settings-success-{PHONE}")

    # Error: an invalid cron expression refused, with its messages (alone: success and
    # info toasts go away by themselves after 8 s).
    expect(toasts(page).locator("[data-toast]")).to_have_count(0, timeout=12_000)
    choose_strategy(page, "Cron expression")
    backup_section(page).get_by_label("Cron expression").fill("61 * * * *")
    backup_section(page).get_by_role("button", name="Save schedule").click()
    expect(alerts(page)).to_contain_text("The Database backup schedule was not saved")
    expect(schedule_block(page).get_by_role("alert")).to_contain_text("Invalid minute field")
    assert_no_horizontal_scroll(page)
    screenshot(page, folder, f"settings-error-{PHONE}")
    page.set_viewport_size({"width": DESKTOP, "height": 900})
    expect(schedule_block(page)).to_be_visible()
    screenshot(page, folder, f"settings-error-{DESKTOP}")

    assert sorted(path.name for path in folder.glob("settings-*.png")) == [
        f"settings-error-{DESKTOP}.png",
        f"settings-error-{PHONE}.png",
        f"settings-success-{DESKTOP}.png",
        f"settings-success-{PHONE}.png",
    ]
    assert unexpected_console_errors(page) == []


def test_a_server_that_stops_answering_is_reported_once_not_silently(settings_page, live_server):
    page = settings_page
    live_server.stop()
    alert = page.locator("#alerts [data-toast]")
    expect(alert).to_have_text(re.compile("The server cannot be reached"), timeout=10_000)
    page.wait_for_timeout(7_000)  # two more failed polls must not stack more messages
    expect(alert).to_have_count(1)
    live_server.start()
    expect(page.locator("#status-backup_db")).to_be_visible()


def test_weekly_preview_follows_the_ticked_days_and_time_before_saving(settings_page):
    page = settings_page
    choose_strategy(page, "Weekly")
    preview = page.locator("#schedule-preview-backup_db")
    expect(preview).to_contain_text("Choose at least one weekday.")

    page.get_by_label("Thursday").check()
    backup_section(page).get_by_label("Time of day").fill("05:45")
    backup_section(page).get_by_label("Time of day").dispatch_event("change")

    expect(preview).to_contain_text("Every Thursday at 05:45")
    runs = preview.get_by_role("listitem")
    expect(runs).to_have_count(5)
    moments = [shown_time(item).astimezone(ZONE) for item in runs.all()]
    assert {moment.strftime("%a %H:%M") for moment in moments} == {"Thu 05:45"}


def test_a_runs_start_answer_arriving_after_its_end_does_not_hide_the_end(settings_page):
    """The "started" answer of "Run backup now" can reach the page after the poll that
    announced the run's end (a small database backs up in milliseconds); the page keeps
    "finished", the later event, not the later arrival."""
    page = settings_page
    held = []

    def hold(route):
        held.append((route, route.fetch()))  # the server has answered; the page does not see it yet

    page.route("**/settings/schedule/backup_db/run", hold)
    page.get_by_role("button", name="Run backup now").click()
    expect(toasts(page)).to_contain_text("Backup finished", timeout=10_000)  # from the 3-second poll
    route, answer = held[0]
    route.fulfill(response=answer)
    expect(status_value(page, "Last result")).to_contain_text("Success")
    page.wait_for_timeout(500)  # the late answer has been swapped in and its toast armed
    expect(toasts(page)).to_contain_text("Backup finished")
    expect(toasts(page)).not_to_contain_text("Backup started")
    assert unexpected_console_errors(page) == []
