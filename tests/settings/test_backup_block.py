"""The "Database backup" block: Backup DB now, download, delete, and refusing other files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.services.backups import backup_lock
from tests.security.support import wait_for_runs_to_finish
from tests.settings.html_tree import first_element, oob_toast, parse
from tests.support.locks import backup_running


def backup_files(app) -> list[Path]:
    return sorted(Path(app.config["BACKUPS_DIR"]).glob("backup-*.sqlite3"))


def listed_names(document) -> list[str]:
    return [cell.text for cell in document.by_id("backups-block").find_all("th", class_="filename")]


def make_backup(client, app) -> Path:
    """A manual backup through the (synchronous) JSON API, as a precondition."""
    assert client.post("/api/v1/settings/backup-db").status_code == 200
    (path,) = backup_files(app)
    return path


def test_backup_now_with_htmx_starts_a_background_run_and_toasts_that_it_started(app, client, htmx):
    response = client.post("/settings/backups", headers=htmx)
    fragment = parse(response.get_data(as_text=True))

    assert response.status_code == 202
    assert first_element(fragment).attrs["id"] == "backups-block"
    toast = oob_toast(fragment, "toasts")
    assert "Backup started" in toast.text
    assert oob_toast(fragment, "alerts") is None
    assert response.headers["HX-Trigger"] == "run-started"
    wait_for_runs_to_finish(app)
    (path,) = backup_files(app)
    assert path.stat().st_size > 0
    refreshed = parse(client.get("/settings/backups", headers=htmx).get_data(as_text=True))
    assert listed_names(refreshed) == [path.name]


def test_backup_now_without_htmx_redirects_and_flashes_that_it_started(app, client):
    response = client.post("/settings/backups")

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/settings")
    wait_for_runs_to_finish(app)
    (path,) = backup_files(app)
    page = parse(client.get("/settings").get_data(as_text=True))
    assert "Backup started" in page.by_id("toasts").text
    assert path.name in listed_names(page)
    # A flashed message shows once.
    assert "Backup started" not in parse(client.get("/settings").get_data(as_text=True)).by_id("toasts").text


def test_backup_now_with_scheduling_off_waits_for_the_backup_and_says_how_it_went(make_app, htmx):
    app = make_app(SCHEDULER_ENABLED="false")
    response = app.test_client().post("/settings/backups", headers=htmx)

    assert response.status_code == 200
    (path,) = backup_files(app)
    toast = oob_toast(parse(response.get_data(as_text=True)), "toasts")
    assert f"Backup {path.name} created and verified." in toast.text


def test_backup_into_a_folder_under_a_regular_file_names_the_folder_and_the_app_keeps_serving(make_app, tmp_path, htmx):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("keep me")
    app = make_app(BACKUPS_DIR=str(blocker / "backups"))
    client = app.test_client()

    assert client.post("/settings/backups", headers=htmx).status_code == 202
    wait_for_runs_to_finish(app)
    status = parse(client.get("/settings/schedule/status", headers=htmx).get_data(as_text=True))

    last_result = status.definition("Last result").text
    assert "Failed" in last_result
    assert app.config["BACKUPS_DIR"] in last_result
    assert blocker.read_text() == "keep me"
    page = client.get("/settings")
    assert page.status_code == 200
    assert "Backup DB now" in page.get_data(as_text=True)


def test_download_sends_the_exact_file_as_an_attachment(app, client):
    path = make_backup(client, app)

    response = client.get(f"/settings/backups/{path.name}")

    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment")
    assert path.name in disposition
    assert response.data == path.read_bytes()


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/settings/backups/..%2Fapp.db"),
        ("GET", "/settings/backups/../app.db"),
        ("GET", "/settings/backups/app.db"),
        ("GET", "/settings/backups/..%2Fapp.db/delete"),
        ("POST", "/settings/backups/..%2Fapp.db/delete"),
        ("POST", "/settings/backups/../app.db/delete"),
        ("POST", "/settings/backups/app.db/delete"),
        ("POST", "/settings/backups/backup-20260101T000000.000000Z-manual.sqlite3/delete"),
    ],
)
def test_names_outside_the_backups_are_not_found_and_the_database_survives(app, client, method, url):
    database = Path(app.config["DATABASE_PATH"])
    size = database.stat().st_size

    response = client.open(url, method=method)

    assert response.status_code == 404
    assert database.is_file()
    assert database.stat().st_size == size


def test_a_symlink_named_like_a_backup_is_neither_served_nor_deleted(app, client):
    folder = Path(app.config["BACKUPS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "backup-20260101T000000.000000Z-manual.sqlite3"
    link.symlink_to(app.config["DATABASE_PATH"])

    assert client.get(f"/settings/backups/{link.name}").status_code == 404
    assert client.post(f"/settings/backups/{link.name}/delete").status_code == 404
    assert link.is_symlink()
    assert Path(app.config["DATABASE_PATH"]).is_file()


def test_delete_link_without_javascript_shows_a_confirmation_page(app, client):
    path = make_backup(client, app)

    response = client.get(f"/settings/backups/{path.name}/delete")
    page = parse(response.get_data(as_text=True))

    assert response.status_code == 200
    button = next(button for button in page.find_all("button") if button.text == "Delete backup")
    form = button.closest("form")
    assert form.attrs["method"] == "post"
    assert form.attrs["action"] == f"/settings/backups/{path.name}/delete"
    assert path.name in page.find("main").text
    assert path.exists()  # showing the question deletes nothing


def test_delete_with_htmx_removes_the_file_and_the_row(app, client, htmx):
    keep = make_backup(client, app)
    client.post("/api/v1/settings/backup-db")
    (doomed,) = [path for path in backup_files(app) if path != keep]

    response = client.post(f"/settings/backups/{doomed.name}/delete", headers=htmx)
    fragment = parse(response.get_data(as_text=True))

    assert response.status_code == 200
    assert not doomed.exists()
    assert keep.exists()
    assert listed_names(fragment) == [keep.name]
    assert "deleted" in oob_toast(fragment, "toasts").text


def test_delete_without_htmx_redirects_to_the_settings_page(app, client):
    path = make_backup(client, app)

    response = client.post(f"/settings/backups/{path.name}/delete")

    assert response.status_code == 302
    assert not path.exists()
    assert path.name not in listed_names(parse(client.get("/settings").get_data(as_text=True)))


def test_backup_now_while_another_backup_holds_the_lock_answers_409(app, client, htmx):
    with backup_running(app):
        response = client.post("/settings/backups", headers=htmx)

    assert response.status_code == 409
    alert = oob_toast(parse(response.get_data(as_text=True)), "alerts")
    assert "A backup is already running" in alert.text
    assert backup_files(app) == []


def test_backups_are_readable_by_the_owner_only(app, client):
    path = make_backup(client, app)

    assert os.stat(path).st_mode & 0o077 == 0


def test_backup_now_without_htmx_while_locked_redirects_with_the_error_flashed(app, client):
    lock = backup_lock(Path(app.config["DATABASE_PATH"]))
    assert lock.try_acquire()
    try:
        response = client.post("/settings/backups")
    finally:
        lock.release()

    assert response.status_code == 302
    page = parse(client.get("/settings").get_data(as_text=True))
    assert "A backup is already running" in page.by_id("alerts").text
    assert backup_files(app) == []
