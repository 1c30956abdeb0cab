"""What the end-to-end tests share: finding things on the Settings page, the clock, the API."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.sync_api import Locator, Page, expect

from tests.support.server import GunicornServer

# GunicornServer runs every app with SCHEDULER_TIMEZONE=Europe/Berlin.
ZONE = ZoneInfo("Europe/Berlin")
ZONE_ABBREVIATION = re.compile(r"\bCES?T\b")
BACKUP_NAME = re.compile(r"backup-\d{8}T\d{6}\.\d{6}Z-(manual|auto|uploaded|pre-restore)\.sqlite3")
# What Chromium logs for an answer htmx swaps on purpose (409 busy, 422 invalid form).
EXPECTED_STATUS_ERROR = re.compile(r"status of (409|422) ")


# htmx logs an aborted request as an error ("htmx:sendAbort", and "htmx:afterRequest" for
# the same request). The regions use hx-sync="this:replace" on purpose: a refresh sent
# while a poll is in flight aborts the poll, so the newest state wins. Not a fault.
HTMX_ABORT = re.compile(r"^htmx:(sendAbort|afterRequest), ")


def open_settings(page: Page, server: GunicornServer, path: str = "/settings") -> Page:
    """Load the Settings page, collecting console errors (but htmx's aborts) in ``page.console_errors``."""
    errors: list[str] = []

    def collect(message) -> None:
        if message.type == "error" and not HTMX_ABORT.match(message.text):
            errors.append(message.text)

    page.on("console", collect)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url + path)
    page.console_errors = errors
    return page


def unexpected_console_errors(page: Page) -> list[str]:
    """Console errors other than the browser's note about a deliberate 409 or 422 answer."""
    return [text for text in page.console_errors if not EXPECTED_STATUS_ERROR.search(text)]


def schedule_block(page: Page) -> Locator:
    return page.get_by_role("region", name="Schedule")


def backup_block(page: Page) -> Locator:
    return page.get_by_role("region", name="Database backup", exact=True)


def backup_section(page: Page, title: str = "Database backup") -> Locator:
    """One task's section of the Schedule block (a group headed by the task's title)."""
    return page.get_by_role("group", name=title, exact=True)


def status_region(page: Page, title: str = "Database backup") -> Locator:
    return page.get_by_role("region", name=f"Status of {title}")


def history_region(page: Page, title: str = "Database backup") -> Locator:
    return page.get_by_role("region", name=f"Run history of {title}")


def status_value(page: Page, term: str, title: str = "Database backup") -> Locator:
    """The value (``<dd>``) shown beside a status term such as "Next run", in one task's status."""
    row = status_region(page, title).locator("div").filter(has=page.get_by_role("term").get_by_text(term, exact=True))
    return row.get_by_role("definition")


def toasts(page: Page) -> Locator:
    """The polite live region (success and info messages); the page's only role=status."""
    return page.get_by_role("status")


def alerts(page: Page) -> Locator:
    """The assertive live region for error messages (by id: the error summary is an alert too)."""
    return page.locator("#alerts")


def choose_strategy(page: Page, label: str) -> None:
    """Pick a strategy and wait until htmx has swapped in its fields."""
    backup_section(page).get_by_label("Strategy").select_option(label=label)
    fields = page.locator("#schedule-fields-backup_db")
    expectations = {
        "Disabled": fields.get_by_text("a backup still runs when started by hand."),
        "Daily": fields.get_by_label("Time of day"),
        "Weekly": fields.get_by_role("group", name="Weekdays"),
        "Cron expression": fields.get_by_label("Cron expression"),
        "Every N hours": fields.get_by_label("Every N hours"),
    }
    expect(expectations[label]).to_be_visible()


def shown_time(locator: Locator) -> datetime:
    """The moment of the ``<time datetime=...>`` inside ``locator``."""
    return datetime.fromisoformat(locator.locator("time").first.get_attribute("datetime"))


def mark_no_reload(page: Page) -> None:
    """Leave a marker in the page's JS state; a navigation or reload would wipe it."""
    page.evaluate("window.__noReload = 1")


def assert_no_reload(page: Page) -> None:
    assert page.evaluate("window.__noReload") == 1, "the page was reloaded or navigated away"


def now_local() -> datetime:
    return datetime.now(ZONE)


def seconds_to_next_minute(margin: float = 0) -> float:
    """Real seconds until the next full minute (plus ``margin``)."""
    now = datetime.now(UTC)
    boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return (boundary - now).total_seconds() + margin


def set_schedule(server: GunicornServer, **schedule) -> dict:
    """A precondition through the JSON API; waits until the scheduler's leader applied it."""
    code, body = server.request("POST", "/api/v1/settings/scheduler/backup", schedule)
    assert code == 200, body
    return wait_until_applied(server)


def wait_until_applied(server: GunicornServer, timeout: float = 15) -> dict:
    """Wait until the scheduler's leader has applied the saved schedule; return the job."""
    return server.wait_until_applied(timeout)


def make_backup(server: GunicornServer) -> str:
    """A manual backup through the JSON API (a precondition); returns its file name."""
    code, body = server.request("POST", "/api/v1/settings/backup-db")
    assert code == 200, body
    return body["file"]


def saved_schedule(server: GunicornServer) -> dict:
    """The backup schedule as the JSON API reports it (what was really saved)."""
    code, body = server.request("GET", "/api/v1/settings/scheduler")
    assert code == 200, body
    return body["jobs"][0]["schedule"]


def run_history(server: GunicornServer) -> list[dict]:
    code, body = server.request("GET", "/api/v1/settings/scheduler")
    assert code == 200, body
    return body["history"]


def add_ballast(database: Path, megabytes: int) -> None:
    """Grow a (not yet served) database with random blobs so a backup takes a visible moment."""
    database.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE ballast (data BLOB NOT NULL)")
        connection.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO ballast SELECT randomblob(1048576) FROM n",
            (megabytes,),
        )
    connection.close()
