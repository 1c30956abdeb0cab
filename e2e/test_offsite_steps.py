"""Manual steps 21-25 of docs/features/settings-scheduler.md ("Off-site copies"), in a real
Chromium against the real app (gunicorn) and a real S3 server (rclone serve s3)."""

from __future__ import annotations

import re
import sqlite3

import pytest
from playwright.sync_api import Page, expect

from e2e.support import alerts, open_settings, status_value, toasts, unexpected_console_errors
from tests.offsite.support import ACCESS_KEY, IDENTITY, RECIPIENT, SECRET_KEY, FaultyS3

pytestmark = pytest.mark.e2e


def offsite_block(page: Page):
    return page.get_by_role("region", name="Off-site copies")


def target_card(page: Page, name: str):
    return offsite_block(page).get_by_role("article", name=name)


def fill_target(
    page: Page, s3: FaultyS3, name: str, secret: str = SECRET_KEY, endpoint: str | None = None, prefix: str = "app/"
) -> None:
    block = offsite_block(page)
    if not block.get_by_label("Name", exact=True).is_visible():
        block.get_by_text("New target", exact=True).click()  # the form folds away once a target exists
    block.get_by_label("Name", exact=True).fill(name)
    block.get_by_label("Endpoint URL").fill(endpoint or s3.endpoint)
    block.get_by_label("Bucket").fill("backups")
    block.get_by_label("Prefix").fill(prefix)
    block.get_by_label("Access key").fill(ACCESS_KEY)
    block.get_by_label("Secret key").fill(secret)
    block.get_by_label("Age public key", exact=True).fill(RECIPIENT)


def add_target_through_the_form(page: Page, s3: FaultyS3, name: str = "Local S3", **kwargs) -> None:
    fill_target(page, s3, name, **kwargs)
    offsite_block(page).get_by_role("button", name="Add target").click()
    expect(toasts(page)).to_contain_text(f"Target {name} added.")


def seed_rows(server, count: int = 50) -> None:
    with sqlite3.connect(server.instance / "app.db") as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
        connection.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {n}",) for n in range(count)])


def row_count(server) -> int:
    with sqlite3.connect(server.instance / "app.db") as connection:
        return connection.execute("SELECT count(*) FROM notes").fetchone()[0]


def test_step_21_add_a_target(offsite_server, s3, page):
    open_settings(page, offsite_server)
    expect(offsite_block(page).get_by_text("No targets yet")).to_be_visible()
    fill_target(page, s3, "Local S3", endpoint="http://169.254.169.254/latest")
    offsite_block(page).get_by_role("button", name="Add target").click()
    expect(offsite_block(page).get_by_label("Endpoint URL")).to_have_accessible_description(
        re.compile("link-local, metadata or unspecified address")
    )
    expect(alerts(page)).to_contain_text("The target was not added")
    expect(offsite_block(page).get_by_label("Endpoint URL")).to_have_value("http://169.254.169.254/latest")
    expect(offsite_block(page).get_by_label("Bucket")).to_have_value("backups")

    offsite_block(page).get_by_label("Endpoint URL").fill(s3.endpoint)
    offsite_block(page).get_by_label("Secret key").fill(SECRET_KEY)  # a password field is never sent back
    offsite_block(page).get_by_role("button", name="Add target").click()
    expect(toasts(page)).to_contain_text("Target Local S3 added.")
    card = target_card(page, "Local S3")
    expect(card).to_contain_text("Not used yet")
    expect(card).to_contain_text("AKIA…LE")
    assert SECRET_KEY not in page.content()
    assert unexpected_console_errors(page) == []


def test_step_22_test_the_connection(offsite_server, s3, page):
    open_settings(page, offsite_server)
    add_target_through_the_form(page, s3)
    target_card(page, "Local S3").get_by_role("button", name="Test connection").click()
    expect(toasts(page)).to_contain_text("Local S3: Connected in")
    expect(target_card(page, "Local S3")).to_contain_text("OK")
    expect(target_card(page, "Local S3")).to_contain_text("wrote, read back and deleted a test object")
    assert s3.objects() == {}


def test_step_23_a_backup_goes_off_site_and_is_listed(offsite_server, s3, page):
    seed_rows(offsite_server)
    open_settings(page, offsite_server)
    add_target_through_the_form(page, s3)
    page.get_by_role("button", name="Run backup now").click()
    expect(toasts(page)).to_contain_text("Off-site copies: Local S3: verified.", timeout=15_000)
    expect(status_value(page, "Last result")).to_contain_text("Success")
    [key] = s3.objects()
    target_card(page, "Local S3").get_by_role("link", name="Show remote copies").click()
    copies = page.get_by_role("region", name="Remote copies on Local S3")
    expect(copies.get_by_role("row")).to_have_count(2)
    expect(copies).to_contain_text(key.removeprefix("app/").removesuffix(".zst.age"))
    # The targets refresh whenever a run ends: a listing being read stays (hx-preserve).
    with page.expect_response("**/settings/offsite/targets"):
        page.evaluate("htmx.trigger(document.body, 'runs-finished')")
    expect(target_card(page, "Local S3")).to_contain_text("uploaded and verified")
    expect(copies.get_by_role("row")).to_have_count(2)


def test_step_24_restore_from_the_off_site_copy(offsite_server, s3, page):
    seed_rows(offsite_server, 50)
    open_settings(page, offsite_server)
    add_target_through_the_form(page, s3)
    page.get_by_role("button", name="Run backup now").click()
    expect(toasts(page)).to_contain_text("Local S3: verified.", timeout=15_000)
    seed_rows(offsite_server, 25)  # data that the restore will take away
    assert row_count(offsite_server) == 75

    target_card(page, "Local S3").get_by_role("link", name="Show remote copies").click()
    copies = page.get_by_role("region", name="Remote copies on Local S3")
    copies.get_by_role("link", name=re.compile(r"^Restore backup-.* from Local S3$")).click()
    expect(page.get_by_role("heading", name="Restore from Local S3")).to_be_visible()
    page.get_by_label("Age private key").fill("AGE-SECRET-KEY-1" + "Q" * 58)
    page.get_by_role("button", name="Download and check").click()
    expect(page.get_by_label("Age private key")).to_have_accessible_description(
        re.compile("That is not an age private key")
    )

    page.get_by_label("Age private key").fill(f"# created: 2026-11-30\n# public key: {RECIPIENT}\n{IDENTITY}\n")
    page.get_by_role("button", name="Download and check").click()
    expect(page.get_by_role("heading", name="Restore backup?")).to_be_visible()
    expect(page.get_by_role("status").or_(page.locator("#toasts"))).to_contain_text("opened and checked")
    name = page.locator("code.filename").first.inner_text()
    page.get_by_label("Type the backup name to confirm").fill(name)
    page.get_by_role("button", name="Restore this backup").click()
    expect(status_value(page, "Last result")).to_contain_text("Restored", timeout=15_000)
    assert row_count(offsite_server) == 50


def test_step_25_a_failing_target_is_a_warning_not_a_failure(offsite_server, s3, page, pytestconfig):
    seed_rows(offsite_server)
    open_settings(page, offsite_server)
    add_target_through_the_form(page, s3)
    add_target_through_the_form(page, s3, name="Broken", secret="not-the-secret-key-of-that-server", prefix="broken/")
    page.get_by_role("button", name="Run backup now").click()
    expect(alerts(page)).to_contain_text("Backup finished with warnings", timeout=15_000)
    expect(alerts(page)).to_contain_text("Broken: failed: The server refused the access key or secret key")
    expect(status_value(page, "Last result")).to_contain_text("Success with warnings")
    expect(target_card(page, "Local S3")).to_contain_text("uploaded and verified")
    expect(target_card(page, "Broken")).to_contain_text("Failed")
    folder = pytestconfig.rootpath / pytestconfig.getoption("--output") / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    for width in (1280, 360):
        page.set_viewport_size({"width": width, "height": 900})
        offsite_block(page).screenshot(path=folder / f"offsite-block-{width}.png", caret="initial")
    assert unexpected_console_errors(page) == []
