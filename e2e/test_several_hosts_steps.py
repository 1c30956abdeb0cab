"""Several hosts in the browser: a backup in another host's folder, and restoring a PostgreSQL dump from the page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from e2e.support import backup_block, make_backup, open_settings, toasts, unexpected_console_errors

pytestmark = pytest.mark.xdist_group("postgres")

ANY_BACKUP = re.compile(r"backup-\d{8}T\d{6}\.\d{6}Z-[a-z-]+\.(sqlite3|dump)")


def backup_rows(page):
    """The data rows of the backup table, SQLite backups and dumps alike."""
    return backup_block(page).get_by_role("row").filter(has_text=ANY_BACKUP)


def test_a_backup_in_another_hosts_folder_is_listed_as_there_without_controls(gunicorn, page, postgres_url):
    a = gunicorn("host-a", STATE_DATABASE_URL=postgres_url, HOST_NAME="host-a")
    b = gunicorn("host-b", STATE_DATABASE_URL=postgres_url, HOST_NAME="host-b")
    name = make_backup(a)
    message = "This backup is on host host-a, not on this one (BACKUPS_DIR is not shared)."

    open_settings(page, b)
    row = backup_rows(page).filter(has_text=name)
    expect(row).to_contain_text("On host host-a")
    expect(row.get_by_role("link")).to_have_count(0)  # no Restore, Download or Delete here
    expect(page.locator("#backups-elsewhere")).to_contain_text("(host-a)")
    assert unexpected_console_errors(page) == []

    assert b.request("GET", f"/api/v1/settings/backups/{name}") == (404, {"error": message})
    answer = page.goto(f"{b.url}/settings/backups/{name}")
    assert answer.status == 404
    expect(page.locator("body")).to_contain_text(message)

    open_settings(page, a)
    expect(backup_rows(page).filter(has_text=name).get_by_role("link", name=f"Download {name}")).to_be_visible()


def test_restore_a_postgres_dump_through_the_page(gunicorn, page, postgres, postgres_url):
    database = postgres_url.rsplit("/", 1)[1]
    postgres.psql(
        "CREATE TABLE item (id serial PRIMARY KEY, label text);"
        "INSERT INTO item (label) SELECT 'backed up' FROM generate_series(1, 3)",
        database,
    )
    server = gunicorn(DATABASE_URL=postgres_url)
    name = make_backup(server)
    postgres.psql("INSERT INTO item (label) VALUES ('added later'); CREATE TABLE added_since (x int)", database)

    open_settings(page, server)
    backup_rows(page).filter(has_text=name).get_by_role("link", name=f"Restore {name}").click()
    expect(page.get_by_role("heading", name="Restore backup?", level=1)).to_be_visible()
    expect(page.get_by_text(f"PostgreSQL database {postgres_url}")).to_be_visible()
    tables = page.locator("#restore-tables")
    expect(tables.get_by_role("row", name="public.item")).to_contain_text("Yes")
    expect(page.locator("#kept-tables")).to_contain_text("public.added_since")
    field = page.get_by_label("Type the backup name to confirm")
    field.fill("backup")
    page.get_by_role("button", name="Restore this backup").click()
    expect(page.locator("#confirm-error")).to_contain_text(f"Type the backup's exact name, {name}")
    field.fill(name)
    page.get_by_role("button", name="Restore this backup").click()

    expect(toasts(page)).to_contain_text(f"Restoring {name}")
    expect(toasts(page)).to_contain_text(
        f"Restore finished: {name}. Safety backup of the previous data:", timeout=60_000
    )
    assert postgres.psql("SELECT string_agg(label, ',' ORDER BY id) FROM item", database) == ",".join(["backed up"] * 3)
    expect(backup_rows(page).filter(has_text="-pre-restore.dump")).to_have_count(1)
    assert unexpected_console_errors(page) == []
