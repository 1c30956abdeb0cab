"""Backup folder faults: missing, not writable, full, a file. Each fails one run, readably, and heals.

Each fault goes through ``claim_task`` + ``complete_task`` (so the history row is checked)
and through the real app under gunicorn (the JSON API and the polled status partial).
As root, permission bits do not stop us, so "not writable" is a read-only tmpfs and
"full" a 1 MB tmpfs; without mount rights the fallbacks are chmod 0500 (non-root) and
RLIMIT_FSIZE in a child process.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.faults.conftest import Mounts
from tests.faults.helpers import (
    PROJECT_ROOT,
    add_filler_rows,
    file_mode,
    final_backups,
    integrity_and_rows,
    run_backup,
    status_partial_text,
    stored_run,
    temp_files,
)
from tests.support.server import GunicornServer

# The module-scoped server and mounts are shared: one xdist worker runs this whole module.
pytestmark = pytest.mark.xdist_group("disk-faults")

NOT_WRITABLE = "is not writable"
FULL = "is full (no space left on device)"
IS_A_FILE = "is a file, not a folder"
GROWTH_MEGABYTES = 3  # the database outgrows the 1 MB tmpfs, but a fresh one (~60 KB) fits


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_failed_and_reported(app, outcome, message: str) -> None:
    """The run failed with ``message`` in its stored error, the status partial shows it, pages still work."""
    assert outcome.error is not None, "the run should have failed"
    assert message in str(outcome.error)
    stored = stored_run(app, outcome.run.id)
    assert stored.status == "failed"
    assert stored.error == str(outcome.error)
    client = app.test_client()
    assert stored.error in status_partial_text(client)
    assert client.get("/settings").status_code == 200


def assert_succeeded(app, outcome, folder: Path) -> Path:
    """The run succeeded, its history row names the file, and the file is a verified backup."""
    assert outcome.error is None, outcome.error
    stored = stored_run(app, outcome.run.id)
    assert (stored.status, stored.error) == ("success", None)
    path = folder / stored.file
    assert integrity_and_rows(path, "sqlite_master")[0] == "ok"
    assert temp_files(folder) == []
    return path


class ReadOnlyFolders:
    """Make folders unwritable: a read-only tmpfs when we may mount, else chmod 0500 (not as root)."""

    def __init__(self, mounts: Mounts) -> None:
        self.mounts = mounts

    def make(self, path: Path) -> None:
        if self.mounts.available:
            self.mounts.tmpfs(path, "ro,size=1m")
        elif os.geteuid() != 0:
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o500)
        else:
            pytest.skip("root without mount rights: no way to make a folder unwritable")

    def undo(self, path: Path) -> None:
        if path in self.mounts.active:
            self.mounts.unmount(path)
        else:
            path.chmod(0o700)


@pytest.fixture
def read_only(mounts) -> ReadOnlyFolders:
    return ReadOnlyFolders(mounts)


# --- through the task layer --------------------------------------------------------------


def test_missing_backup_folder_is_created_private_and_the_run_succeeds(make_app, tmp_path):
    folder = tmp_path / "not" / "yet" / "backups"
    app = make_app(BACKUPS_DIR=str(folder))

    path = assert_succeeded(app, run_backup(app), folder)

    assert file_mode(folder) == 0o700
    assert final_backups(folder) == [path]


def test_missing_backup_folder_under_a_read_only_parent_fails_as_not_creatable(make_app, tmp_path, read_only):
    parent = tmp_path / "parent"
    read_only.make(parent)
    folder = parent / "backups"
    app = make_app(BACKUPS_DIR=str(folder))

    assert_failed_and_reported(app, run_backup(app), "does not exist and cannot be created")

    read_only.undo(parent)
    assert_succeeded(app, run_backup(app), folder)


def test_read_only_backup_folder_fails_the_run_as_not_writable_and_the_next_run_succeeds_once_fixed(
    make_app, tmp_path, read_only
):
    folder = tmp_path / "backups"
    read_only.make(folder)
    app = make_app(BACKUPS_DIR=str(folder))

    outcome = run_backup(app)

    assert_failed_and_reported(app, outcome, NOT_WRITABLE)
    assert list(folder.iterdir()) == []
    read_only.undo(folder)
    assert_succeeded(app, run_backup(app), folder)


def test_full_backup_folder_fails_the_run_and_leaves_older_backups_and_no_temp_files(make_app, tmp_path, mounts):
    if not mounts.available:
        pytest.skip("no mount rights: test_file_size_limit_... covers a full disk instead")
    folder = mounts.tmpfs(tmp_path / "backups", "size=1m")
    app = make_app(BACKUPS_DIR=str(folder))
    older = assert_succeeded(app, run_backup(app), folder)  # the fresh database still fits
    older_digest = sha256(older)
    add_filler_rows(Path(app.config["DATABASE_PATH"]), GROWTH_MEGABYTES)

    outcome = run_backup(app)

    assert_failed_and_reported(app, outcome, FULL)
    assert list(folder.iterdir()) == [older]  # no temp file, no journal, the older backup kept
    assert sha256(older) == older_digest
    mounts.unmount(folder)  # the folder underneath, on a roomy disk
    newer = assert_succeeded(app, run_backup(app), folder)
    assert integrity_and_rows(newer)[1] == int(GROWTH_MEGABYTES * 1_000_000 / 4000)


def test_file_size_limit_fails_the_run_cleanly_and_leaves_older_backups(make_app, tmp_path):
    """RLIMIT_FSIZE (works without root, and with it) stands in for a full disk in a child process."""
    app = make_app()
    folder = Path(app.config["BACKUPS_DIR"])
    older = assert_succeeded(app, run_backup(app), folder)
    older_digest = sha256(older)
    add_filler_rows(Path(app.config["DATABASE_PATH"]), GROWTH_MEGABYTES)

    driver = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.faults.backup_driver",
            app.config["INSTANCE_PATH"],
            "--file-size-limit",
            "1048576",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert driver.returncode == 0, driver.stderr
    result = json.loads(driver.stdout.splitlines()[-1])
    assert result["status"] == "failed"
    # SQLite turns EFBIG (like EDQUOT) into a generic write error; the message says where.
    assert f"Writing to the backup folder {folder} failed (disk I/O error)" in result["error"]
    assert stored_run(app, result["run_id"]).error == result["error"]
    assert result["error"] in status_partial_text(app.test_client())
    assert list(folder.iterdir()) == [older]
    assert sha256(older) == older_digest
    assert_succeeded(app, run_backup(app), folder)


def test_regular_file_at_the_folder_path_fails_the_run_as_a_file_and_the_next_run_succeeds_once_removed(
    make_app, tmp_path
):
    folder = tmp_path / "backups"
    folder.write_text("not a folder")
    app = make_app(BACKUPS_DIR=str(folder))

    assert_failed_and_reported(app, run_backup(app), IS_A_FILE)

    assert folder.read_text() == "not a folder"
    folder.unlink()
    assert_succeeded(app, run_backup(app), folder)


# --- through the real app under gunicorn ----------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app under gunicorn (2 workers) with BACKUPS_DIR at a path the tests break and fix."""
    root = tmp_path_factory.mktemp("http")
    srv = GunicornServer(root / "instance", workers=2, BACKUPS_DIR=str(root / "backups")).start()
    yield srv
    srv.stop()
    shutil.rmtree(root, ignore_errors=True)


def backups_folder(server: GunicornServer) -> Path:
    return Path(server.env["BACKUPS_DIR"])


def get_page(server: GunicornServer, path: str, htmx: bool = False) -> tuple[int, str]:
    request = urllib.request.Request(server.url + path, headers={"HX-Request": "true"} if htmx else {})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, html.unescape(answer.read().decode())


def assert_http_backup_fails(server: GunicornServer, message: str) -> None:
    """POST backup-db answers 507 with ``message``; the failed run shows in the status partial; pages serve."""
    status, body = server.request("POST", "/api/v1/settings/backup-db")
    assert status == 507, body
    assert message in body["error"]
    assert (body["run"]["status"], body["run"]["error"]) == ("failed", body["error"])
    code, partial = get_page(server, "/settings/schedule/status", htmx=True)
    assert code == 200
    assert body["error"] in partial
    assert get_page(server, "/settings")[0] == 200


def assert_http_backup_succeeds(server: GunicornServer) -> Path:
    status, body = server.request("POST", "/api/v1/settings/backup-db")
    assert status == 200, body
    path = backups_folder(server) / body["file"]
    assert integrity_and_rows(path, "sqlite_master")[0] == "ok"
    assert temp_files(backups_folder(server)) == []
    return path


def test_real_app_creates_a_missing_backup_folder(server):
    folder = backups_folder(server)
    shutil.rmtree(folder, ignore_errors=True)

    assert_http_backup_succeeds(server)

    assert file_mode(folder) == 0o700


def test_real_app_reports_a_read_only_backup_folder_and_recovers(server, read_only):
    folder = backups_folder(server)
    shutil.rmtree(folder, ignore_errors=True)
    read_only.make(folder)

    assert_http_backup_fails(server, NOT_WRITABLE)

    read_only.undo(folder)
    assert_http_backup_succeeds(server)


def test_real_app_reports_a_full_backup_folder_keeps_older_backups_and_recovers(server, mounts):
    if not mounts.available:
        pytest.skip("no mount rights for a small tmpfs")
    folder = backups_folder(server)
    shutil.rmtree(folder, ignore_errors=True)
    mounts.tmpfs(folder, "size=1m")
    older = assert_http_backup_succeeds(server)
    older_digest = sha256(older)
    add_filler_rows(server.instance / "app.db", GROWTH_MEGABYTES, table="filler")

    assert_http_backup_fails(server, FULL)

    assert list(folder.iterdir()) == [older]
    assert sha256(older) == older_digest
    mounts.unmount(folder)
    assert_http_backup_succeeds(server)


def test_real_app_reports_a_file_in_place_of_the_backup_folder_and_recovers(server):
    folder = backups_folder(server)
    shutil.rmtree(folder, ignore_errors=True)
    folder.write_text("not a folder")
    try:
        assert_http_backup_fails(server, IS_A_FILE)
    finally:
        folder.unlink()

    assert_http_backup_succeeds(server)
