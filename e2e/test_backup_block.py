"""The "Database backup" block in a real Chromium against the real app."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def test_backup_db_now_adds_a_verified_backup_to_the_table(settings_page, live_server):
    page = settings_page
    block = page.get_by_role("region", name="Database backup")
    expect(block.get_by_text("No backups yet")).to_be_visible()

    page.get_by_role("button", name="Backup DB now").click()

    row = block.get_by_role("row", name=re.compile(r"backup-\d{8}T\d{6}\.\d{6}Z-manual\.sqlite3"))
    expect(row).to_have_count(1)
    expect(page.locator("#toasts")).to_contain_text("created and verified")
    files = [p.name for p in (live_server.instance / "backups").glob("backup-*.sqlite3")]
    assert len(files) == 1
    expect(row).to_contain_text(files[0])
    assert page.url.endswith("/settings")  # swapped in place, no navigation
    assert page.console_errors == []
