"""Restore and upload in the "Database backup" block: the confirmation page, typed names, checked uploads."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from app.services import runs
from tests.settings.html_tree import first_element, oob_toast, parse
from tests.support.data import fill_items, row_checksum
from tests.support.locks import backup_running
from tests.support.waiting import wait_for


@pytest.fixture
def data(app) -> Path:
    path = Path(app.config["DATABASE_PATH"])
    fill_items(path, 20, label="live")
    return path


def make_backup(client) -> str:
    answer = client.post("/api/v1/settings/backup-db")
    assert answer.status_code == 200
    return answer.get_json()["file"]


def uploaded_bytes(tmp_path: Path, rows: int = 3) -> bytes:
    path = tmp_path / "mine.db"
    fill_items(path, rows, label="uploaded")
    return path.read_bytes()


def test_each_listed_backup_has_a_restore_link_and_the_block_an_upload_form(app, client, data):
    name = make_backup(client)
    page = parse(client.get("/settings").get_data(as_text=True))
    block = page.by_id("backups-block")

    link = block.find("a", **{"aria-label": f"Restore {name}"})
    assert link is not None and link.text == "Restore"
    assert link.attrs["href"] == f"/settings/backups/{name}/restore"
    label = block.find("label", for_="file")
    assert label.text == "Backup file"
    assert block.find("input", id="file").attrs["type"] == "file"
    assert any(button.text == "Upload backup" for button in block.find_all("button"))
    form = block.find("form", class_="upload-form")
    assert form.attrs["enctype"] == "multipart/form-data" and form.attrs["method"] == "post"


def test_the_confirmation_page_names_the_file_the_safety_backup_and_the_schema_changes(app, client, data):
    name = make_backup(client)
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE added_since (x)")
    conn.close()

    answer = client.get(f"/settings/backups/{name}/restore")

    assert answer.status_code == 200
    page = parse(answer.get_data(as_text=True))
    assert name in page.by_id("restore-heading").closest("section").text
    assert "safety backup" in page.text
    table = page.find("table")
    assert "added_since" in table.text and "Only in the live data" in table.text
    assert page.find("label", for_="confirm").text == "Type the backup name to confirm"
    assert any(button.text == "Restore this backup" for button in page.find_all("button"))


def test_a_wrong_name_is_refused_next_to_the_field_and_nothing_changes(app, client, data):
    name = make_backup(client)
    fill_items(data, 3, label="later")
    current = row_checksum(data)

    answer = client.post(f"/settings/backups/{name}/restore", data={"confirm": "backup"})

    assert answer.status_code == 422
    page = parse(answer.get_data(as_text=True))
    field = page.find("input", id="confirm")
    assert field.attrs["value"] == "backup" and field.attrs["aria-invalid"] == "true"
    assert name in page.by_id("confirm-error").text
    assert row_checksum(data) == current
    assert all(run.trigger != "restore" for run in runs.recent_runs(app.extensions["db"], "backup_db"))


def test_the_typed_name_starts_the_restore_and_the_settings_page_says_so(app, client, data):
    name = make_backup(client)
    before = row_checksum(data)
    fill_items(data, 3, label="later")

    answer = client.post(f"/settings/backups/{name}/restore", data={"confirm": name})

    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/settings#status-backup_db")
    page = parse(client.get("/settings").get_data(as_text=True))
    assert f"Restoring {name}" in page.by_id("toasts").text
    run = runs.latest_run(app.extensions["db"], "backup_db")
    finished = wait_for(lambda: (r := runs.get_run(app.extensions["db"], run.id)).status != "running" and r, 30)
    assert (finished.trigger, finished.status) == ("restore", "success")
    assert row_checksum(data) == before
    # The page knew the runs up to the backup: the poll announces the restore once, by the server.
    poll = f"/settings/schedule/status?after={run.id - 1}&watch="
    status = parse(client.get(poll, headers={"HX-Request": "true"}).get_data(as_text=True))
    toast = oob_toast(status, "toasts").text
    assert toast.startswith(f"Restore finished: {name}. Safety backup of the previous data:")
    assert f"Restored {name}" in status.by_id("last-result-backup_db").text


def test_a_restore_while_a_backup_runs_says_so_on_the_confirmation_page(app, client, data):
    name = make_backup(client)
    with backup_running(app):
        answer = client.post(f"/settings/backups/{name}/restore", data={"confirm": name})
    assert answer.status_code == 409
    assert "A backup is already running." in parse(answer.get_data(as_text=True)).by_id("confirm-error").text


def test_unknown_names_are_404(client):
    assert client.get("/settings/backups/backup-20200101T000000.000000Z-manual.sqlite3/restore").status_code == 404
    assert client.get("/settings/backups/..%2Fapp.db/restore").status_code == 404
    assert client.post("/settings/backups/app.db/restore", data={"confirm": "app.db"}).status_code == 404


def test_a_file_that_fails_the_header_check_gets_an_explanation_instead_of_a_form(app, client, data):
    folder = Path(app.config["BACKUPS_DIR"])
    folder.mkdir(exist_ok=True)
    name = "backup-20260101T000000.000000Z-uploaded.sqlite3"
    (folder / name).write_bytes(b"not sqlite" * 100)

    answer = client.get(f"/settings/backups/{name}/restore")

    assert answer.status_code == 400
    page = parse(answer.get_data(as_text=True))
    assert "not a SQLite database" in page.text
    assert page.find("input", id="confirm") is None


def test_upload_with_htmx_lists_the_file_and_toasts(app, client, htmx, tmp_path):
    answer = client.post(
        "/settings/backups/upload",
        data={"file": (io.BytesIO(uploaded_bytes(tmp_path)), "mine.db")},
        content_type="multipart/form-data",
        headers=htmx,
    )

    assert answer.status_code == 201
    fragment = parse(answer.get_data(as_text=True))
    assert first_element(fragment).attrs["id"] == "backups-block"
    names = [cell.text for cell in fragment.find_all("th", class_="filename")]
    assert len(names) == 1 and names[0].endswith("-uploaded.sqlite3")
    assert "Uploaded" in fragment.text  # the kind column
    assert "passed every check" in oob_toast(fragment, "toasts").text


def test_a_refused_upload_shows_the_reason_next_to_the_field_and_keeps_nothing(app, client, htmx):
    answer = client.post(
        "/settings/backups/upload",
        data={"file": (io.BytesIO(b"PK\x03\x04 a zip file" * 50), "backup.zip")},
        content_type="multipart/form-data",
        headers=htmx,
    )

    assert answer.status_code == 422
    fragment = parse(answer.get_data(as_text=True))
    error = fragment.by_id("file-error").text
    assert "backup.zip" in error and "not a SQLite database" in error
    assert fragment.find("input", id="file").attrs["aria-invalid"] == "true"
    assert "nothing was kept" in oob_toast(fragment, "alerts").text
    folder = Path(app.config["BACKUPS_DIR"])
    assert not folder.exists() or list(folder.iterdir()) == []


def test_upload_without_javascript_redirects_and_flashes(app, client, tmp_path):
    answer = client.post(
        "/settings/backups/upload",
        data={"file": (io.BytesIO(uploaded_bytes(tmp_path)), "mine.db")},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 302
    page = parse(client.get("/settings").get_data(as_text=True))
    assert "passed every check" in page.by_id("toasts").text


def test_an_empty_upload_form_asks_for_a_file(client):
    answer = client.post("/settings/backups/upload", data={}, content_type="multipart/form-data")
    assert answer.status_code == 422
    assert "Choose a backup file" in parse(answer.get_data(as_text=True)).by_id("file-error").text


def csrf_token(client) -> str:
    page = parse(client.get("/settings").get_data(as_text=True))
    return page.find("input", name="csrf_token").attrs["value"]


def test_with_csrf_on_the_upload_still_streams_into_the_backup_folder(make_app, tmp_path, htmx):
    """The CSRF check reads the form before the route runs: the file must already go to the folder."""
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    data = {"csrf_token": csrf_token(client), "file": (io.BytesIO(uploaded_bytes(tmp_path)), "mine.db")}

    answer = client.post("/settings/backups/upload", data=data, content_type="multipart/form-data", headers=htmx)

    assert answer.status_code == 201, answer.get_data(as_text=True)
    assert [path.name.endswith("-uploaded.sqlite3") for path in Path(app.config["BACKUPS_DIR"]).iterdir()] == [True]


def test_an_oversized_upload_is_413_with_the_reason_next_to_the_field(make_app, htmx):
    app = make_app(WTF_CSRF_ENABLED=True, MAX_UPLOAD_MB="1")
    client = app.test_client()
    data = {"csrf_token": csrf_token(client), "file": (io.BytesIO(b"\0" * (2 * 1024 * 1024)), "huge.db")}

    answer = client.post("/settings/backups/upload", data=data, content_type="multipart/form-data", headers=htmx)

    assert answer.status_code == 413
    fragment = parse(answer.get_data(as_text=True))
    assert "larger than 1 MB" in fragment.by_id("file-error").text
    folder = Path(app.config["BACKUPS_DIR"])
    assert not folder.exists() or list(folder.iterdir()) == []


def test_the_restore_is_announced_on_the_next_page_only_not_on_every_reload(app, client, data):
    name = make_backup(client)
    client.post(f"/settings/backups/{name}/restore", data={"confirm": name})
    run = runs.latest_run(app.extensions["db"], "backup_db")
    wait_for(lambda: runs.get_run(app.extensions["db"], run.id).status != "running", 30)

    first = parse(client.get("/settings").get_data(as_text=True)).by_id("schedule-poll").attrs["hx-get"]
    again = parse(client.get("/settings").get_data(as_text=True)).by_id("schedule-poll").attrs["hx-get"]

    assert f"watch={run.id}" in first
    assert f"watch={run.id}" not in again


def test_an_anonymous_upload_is_refused_before_anything_is_written(make_app, tmp_path):
    app = make_app(ADMIN_PASSWORD="correct horse battery", WTF_CSRF_ENABLED=True)
    client = app.test_client()
    folder = Path(app.config["BACKUPS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)

    answer = client.post(
        "/settings/backups/upload",
        data={"file": (io.BytesIO(b"\0" * 200_000), "big.db")},
        content_type="multipart/form-data",
    )

    assert answer.status_code in (302, 401)
    assert list(folder.iterdir()) == []
