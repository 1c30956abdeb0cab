"""Backup verification (``verify_backups``): the newest backups still open, pass the full check, match their sha256."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.services import catalogue, runs
from app.services.runner import TaskBusy, claim_task, run_task_now
from app.services.verification import verify_backups
from tests.support.data import fill_items
from tests.support.locks import backup_running

VERIFY = "verify_backups"


@pytest.fixture
def folder(app) -> Path:
    fill_items(Path(app.config["DATABASE_PATH"]), 200, blob_bytes=300)
    return Path(app.config["BACKUPS_DIR"])


def make_backups(app, count: int) -> list[str]:
    names = []
    for _ in range(count):
        outcome = run_task_now(app.config, app.extensions["db"], "backup_db")
        assert outcome.error is None
        names.append(outcome.result["file"])
    return names


def listed(app) -> dict:
    return {
        entry.name: entry
        for entry in catalogue.catalogued_backups(app.extensions["db"], Path(app.config["BACKUPS_DIR"]))
    }


def flip_a_byte(path: Path, offset: int = 5000) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_clean_backups_are_verified_and_the_run_says_how_many(app, folder):
    names = make_backups(app, 2)
    before = {name: listed(app)[name].verified_at for name in names}

    outcome = run_task_now(app.config, app.extensions["db"], VERIFY)

    assert outcome.error is None, outcome.error
    assert (outcome.run.status, outcome.run.trigger) == ("success", "manual")
    assert outcome.run.detail == "2 backup(s) verified."
    after = listed(app)
    assert all(after[name].verified_at > before[name] for name in names)
    assert all(after[name].damaged is None for name in names)


def test_a_flipped_byte_fails_the_run_loudly_and_marks_the_file_damaged(app, client, folder):
    good, bad = make_backups(app, 2)
    flip_a_byte(folder / bad)

    outcome = run_task_now(app.config, app.extensions["db"], VERIFY)

    assert outcome.run.status == "failed"
    assert bad in outcome.run.error and good not in outcome.run.error
    assert "sha256 no longer matches" in outcome.run.error or "integrity" in outcome.run.error
    entries = {entry["file"]: entry for entry in client.get("/api/v1/settings/backups").get_json()["backups"]}
    assert entries[bad]["damaged"] and entries[good]["damaged"] is None
    status, body = client.get("/healthz").status_code, client.get("/healthz").get_json()
    assert status == 503
    assert any(reason.startswith("The last Backup verification run failed:") for reason in body["reasons"])
    page = client.get("/settings").get_data(as_text=True)
    assert "Damaged" in page


def test_a_structurally_damaged_file_names_the_integrity_failure(app, folder):
    (name,) = make_backups(app, 1)
    raw = bytearray((folder / name).read_bytes())
    raw[4096 : 4096 + 12] = b"\xff" * 12
    (folder / name).write_bytes(bytes(raw))

    outcome = run_task_now(app.config, app.extensions["db"], VERIFY)

    assert outcome.run.status == "failed"
    assert "sha256" in outcome.run.error or "integrity" in outcome.run.error or "damaged" in outcome.run.error


def test_a_damaged_file_that_passes_again_is_no_longer_marked(app, folder):
    (name,) = make_backups(app, 1)
    original = (folder / name).read_bytes()
    flip_a_byte(folder / name)
    assert run_task_now(app.config, app.extensions["db"], VERIFY).run.status == "failed"
    (folder / name).write_bytes(original)

    outcome = run_task_now(app.config, app.extensions["db"], VERIFY)

    assert outcome.run.status == "success"
    assert listed(app)[name].damaged is None


def test_a_backup_deleted_between_listing_and_checking_is_reported_not_crashed_on(app, folder):
    first, second = make_backups(app, 2)

    def delete_the_next_one(phase: str, percent: int | None) -> None:
        if percent == 0:  # the first file is about to be checked: remove the second one
            (folder / first).unlink()

    found = verify_backups(app.extensions["db"], folder, 3, delete_the_next_one)

    assert found.verified == [second] and found.vanished == [first]
    assert "1 deleted while checking" in found.summary()


def test_only_the_newest_backups_and_never_verified_ones_are_checked(make_app):
    app = make_app(BACKUP_VERIFY_COUNT="1")
    fill_items(Path(app.config["DATABASE_PATH"]), 5)
    folder = Path(app.config["BACKUPS_DIR"])
    oldest, _middle, newest = make_backups(app, 3)
    # A file copied in by hand: never verified, no sha256 recorded.
    foreign = "backup-20200101T000000.000000Z-manual.sqlite3"
    (folder / foreign).write_bytes((folder / oldest).read_bytes())
    os.utime(folder / foreign)

    found = verify_backups(app.extensions["db"], folder, 1, lambda phase, percent: None)

    assert found.verified == [newest, foreign]  # the newest by name, and the one never verified
    assert found.first_recorded == [foreign]
    assert listed(app)[foreign].sha256 is not None


def test_verification_has_its_own_lock_so_it_runs_beside_a_backup_but_not_twice(app, folder):
    make_backups(app, 1)
    with backup_running(app):
        assert run_task_now(app.config, app.extensions["db"], VERIFY).run.status == "success"
    _run, lock = claim_task(app.config, app.extensions["db"], VERIFY, "manual")
    try:
        with pytest.raises(TaskBusy, match=r"A verification is already running\."):
            run_task_now(app.config, app.extensions["db"], VERIFY)
    finally:
        lock.release()
    history = runs.recent_runs(app.extensions["db"], VERIFY)
    assert [r.status for r in history] == ["running", "success"]
