"""The backup files API: list with sha256, download, delete, upload (checked), restore (confirmed)."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from app.services import runs
from tests.support.data import fill_items, row_checksum
from tests.support.locks import backup_running
from tests.support.waiting import wait_for

API = "/api/v1/settings/backups"


@pytest.fixture
def data(app) -> Path:
    path = Path(app.config["DATABASE_PATH"])
    fill_items(path, 40, label="live")
    return path


def backup(client) -> dict:
    answer = client.post("/api/v1/settings/backup-db")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def folder_state(app) -> list[str]:
    folder = Path(app.config["BACKUPS_DIR"])
    return sorted(os.listdir(folder)) if folder.exists() else []


def upload(client, content: bytes, filename: str = "mine.sqlite3"):
    return client.post(API, data={"file": (io.BytesIO(content), filename)}, content_type="multipart/form-data")


def sqlite_bytes(tmp_path: Path, rows: int = 5, label: str = "uploaded", setup: str | None = None) -> bytes:
    path = tmp_path / f"upload-{label}.db"
    fill_items(path, rows, label=label)
    if setup:
        with sqlite3.connect(path) as conn:
            conn.execute(setup)
        conn.close()
    return path.read_bytes()


def wait_finished(app, run_id: int):
    db = app.extensions["db"]
    return wait_for(lambda: (run := runs.get_run(db, run_id)).status != "running" and run, 30)


def test_list_has_kind_sha256_and_verified_at(app, client, data):
    made = backup(client)
    listed = client.get(API).get_json()["backups"]
    assert listed == [
        {
            "file": made["file"],
            "size": made["size"],
            "created_at": listed[0]["created_at"],
            "kind": "manual",
            "sha256": made["sha256"],
            "verified_at": listed[0]["verified_at"],
            "damaged": None,
            "here": True,  # in this host's folder
            "host": app.config["HOST_NAME"],
        }
    ]
    assert listed[0]["verified_at"].endswith(("+01:00", "+02:00"))  # Europe/Berlin, with its offset


def test_download_and_delete_by_exact_name(app, client, data):
    made = backup(client)
    answer = client.get(f"{API}/{made['file']}")
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"].startswith("attachment")
    assert answer.data == (Path(app.config["BACKUPS_DIR"]) / made["file"]).read_bytes()

    assert client.delete(f"{API}/{made['file']}").get_json() == {"deleted": made["file"]}
    assert client.get(API).get_json()["backups"] == []
    assert client.delete(f"{API}/{made['file']}").status_code == 404
    assert client.get(f"{API}/..%2Fapp.db").status_code == 404


def test_upload_keeps_a_checked_file_as_uploaded_with_its_sha256(app, client, tmp_path):
    content = sqlite_bytes(tmp_path)
    answer = upload(client, content)

    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body["kind"] == "uploaded" and body["file"].endswith("-uploaded.sqlite3")
    import hashlib

    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    stored = Path(app.config["BACKUPS_DIR"]) / body["file"]
    assert stored.read_bytes() == content
    assert oct(stored.stat().st_mode & 0o777) == "0o600"
    assert folder_state(app) == [body["file"]]  # nothing staged is left behind


def test_an_uploaded_wal_mode_database_is_kept_as_a_rollback_journal_file(app, client, tmp_path):
    path = tmp_path / "live-copy.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    fill_items(path, 3)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    content = path.read_bytes()
    conn.close()
    assert content[18:20] == b"\x02\x02"

    answer = upload(client, content)

    assert answer.status_code == 201, answer.get_json()
    stored = Path(app.config["BACKUPS_DIR"]) / answer.get_json()["file"]
    assert stored.read_bytes()[18:20] == b"\x01\x01"
    assert row_checksum(stored) == row_checksum(path)


def wal_only_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "walonly.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    content = Path(f"{path}-wal").read_bytes()
    conn.close()
    return content


def truncated_bytes(tmp_path: Path) -> bytes:
    content = sqlite_bytes(tmp_path, rows=300, label="big")
    return content[: len(content) // 2]


@pytest.mark.parametrize(
    ("kind", "make", "message"),
    [
        ("garbage", lambda tmp: b"hello, this is a text file\n" * 200, "not a SQLite database"),
        ("zero bytes", lambda tmp: b"", "empty"),
        ("truncated", truncated_bytes, "truncated"),
        ("header only", lambda tmp: b"SQLite format 3\x00" + b"\x00" * 20, "truncated"),
        ("encrypted-looking", lambda tmp: os.urandom(64 * 1024), "not a SQLite database"),
        ("wal only", wal_only_bytes, "write-ahead log"),
        (
            "unsafe view",
            lambda tmp: sqlite_bytes(tmp, setup="CREATE VIEW v AS SELECT load_extension('/tmp/x') AS y"),
            "not safe",
        ),
    ],
)
def test_a_bad_upload_is_refused_with_a_readable_reason_and_nothing_is_kept(app, client, tmp_path, kind, make, message):
    before = folder_state(app)
    answer = upload(client, make(tmp_path))

    assert answer.status_code == 400, (kind, answer.get_json())
    assert message in answer.get_json()["error"], answer.get_json()
    assert folder_state(app) == before
    assert client.get(API).get_json()["backups"] == []


def test_a_damaged_upload_fails_the_integrity_check(app, client, tmp_path):
    content = bytearray(sqlite_bytes(tmp_path, rows=300))
    content[4096 : 4096 + 12] = b"\xff" * 12
    answer = upload(client, bytes(content))
    assert answer.status_code == 400
    assert "integrity check" in answer.get_json()["error"] or "damaged" in answer.get_json()["error"]
    assert folder_state(app) == []


def test_an_upload_over_the_limit_is_413_and_nothing_is_kept(make_app, tmp_path):
    app = make_app(MAX_UPLOAD_MB="1")
    client = app.test_client()
    answer = upload(client, sqlite_bytes(tmp_path, rows=1, label="x") + b"\x00" * (2 * 1024 * 1024))

    assert answer.status_code == 413
    assert "larger than 1 MB" in answer.get_json()["error"]
    assert folder_state(app) == []


def test_an_upload_without_a_file_is_400(client):
    answer = client.post(API, data={}, content_type="multipart/form-data")
    assert answer.status_code == 400
    assert "multipart/form-data" in answer.get_json()["error"]


def test_restore_needs_the_exact_name_and_then_runs_in_the_background(app, client, data, tmp_path):
    made = backup(client)
    before = row_checksum(data)
    fill_items(data, 5, label="later")

    for body in (None, {}, {"confirm": "backup"}, {"confirm": made["file"] + " "}):
        answer = client.post(f"{API}/{made['file']}/restore", json=body)
        assert answer.status_code == 400, body
        assert made["file"] in answer.get_json()["error"]
    assert client.post(f"{API}/backup-20200101T000000.000000Z-manual.sqlite3/restore", json={}).status_code == 400
    missing = "backup-20200101T000000.000000Z-manual.sqlite3"
    assert client.post(f"{API}/{missing}/restore", json={"confirm": missing}).status_code == 404

    answer = client.post(f"{API}/{made['file']}/restore", json={"confirm": made["file"]})

    assert answer.status_code == 202
    run = answer.get_json()["run"]
    assert (run["trigger"], run["status"]) == ("restore", "running")
    finished = wait_finished(app, run["id"])
    assert finished.status == "success", finished.error
    assert row_checksum(data) == before
    shown = client.get(f"/api/v1/settings/scheduler/runs/{run['id']}").get_json()["run"]
    assert shown["detail"].startswith("Safety backup of the previous data: backup-")
    kinds = sorted(entry["kind"] for entry in client.get(API).get_json()["backups"])
    assert kinds == ["manual", "pre-restore"]


def test_restore_is_409_while_a_backup_runs_and_a_backup_is_409_while_a_restore_runs(app, client, data):
    made = backup(client)
    with backup_running(app):
        answer = client.post(f"{API}/{made['file']}/restore", json={"confirm": made["file"]})
        assert answer.status_code == 409
    fill_items(data, 3000, blob_bytes=2000)  # a restore long enough to be caught running
    big = backup(client)
    started = client.post(f"{API}/{big['file']}/restore", json={"confirm": big["file"]})
    assert started.status_code == 202
    busy = client.post("/api/v1/settings/backup-db")
    second = client.post(f"{API}/{big['file']}/restore", json={"confirm": big["file"]})
    wait_finished(app, started.get_json()["run"]["id"])

    assert busy.status_code == 409 and busy.get_json()["error"] == "A restore is already running."
    assert second.status_code == 409
    assert second.get_json()["running"]["id"] == started.get_json()["run"]["id"]


def test_an_uploaded_backup_restores_like_any_other(app, client, data, tmp_path):
    content = sqlite_bytes(tmp_path, rows=9, label="from upload")
    name = upload(client, content).get_json()["file"]

    answer = client.post(f"{API}/{name}/restore", json={"confirm": name})

    assert wait_finished(app, answer.get_json()["run"]["id"]).status == "success"
    with sqlite3.connect(data) as conn:
        assert conn.execute("SELECT count(*), min(label) FROM item").fetchone() == (9, "from upload")
    conn.close()


def test_cli_restore_with_yes(app, runner, data):
    client = app.test_client()
    made = backup(client)
    before = row_checksum(data)
    fill_items(data, 4, label="later")

    refused = runner.invoke(args=["backup", "restore", made["file"]], input="wrong\n")
    assert refused.exit_code != 0 and "did not match" in refused.output
    result = runner.invoke(args=["backup", "restore", made["file"], "--yes"])

    assert result.exit_code == 0, result.output
    assert f"Restored {made['file']}. Safety backup of the previous data: backup-" in result.output
    assert row_checksum(data) == before
    missing = runner.invoke(args=["backup", "restore", "backup-x.sqlite3", "--yes"])
    assert missing.exit_code != 0 and "No backup named" in missing.output


def test_restore_of_a_listed_file_whose_copy_was_replaced_by_a_symlink_is_404(app, client, data, tmp_path):
    made = backup(client)
    path = Path(app.config["BACKUPS_DIR"]) / made["file"]
    elsewhere = tmp_path / "elsewhere.db"
    shutil.move(path, elsewhere)
    path.symlink_to(elsewhere)
    answer = client.post(f"{API}/{made['file']}/restore", json={"confirm": made["file"]})
    assert answer.status_code == 404


def test_an_upload_left_by_a_killed_worker_is_removed_by_the_next_upload_after_a_day(app, client, tmp_path):
    folder = Path(app.config["BACKUPS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    abandoned, recent = folder / ".upload-0123456789abcdef.tmp", folder / ".upload-fedcba9876543210.tmp"
    for path in (abandoned, recent):
        path.write_bytes(b"partial")
    day_ago = time.time() - 25 * 3600
    os.utime(abandoned, (day_ago, day_ago))

    assert upload(client, sqlite_bytes(tmp_path)).status_code == 201

    assert not abandoned.exists()
    assert recent.exists()  # it may still be arriving in another worker
