"""Faults of the off-site server: each run ends "success with warnings", the local backup stays
intact, the target shows the error, and a later run uploads fine. Real rclone, real faults."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from app.models import JobRun
from app.services import offsite_targets
from app.services.backup_tasks import BACKUP_TASK
from app.services.notification_settings import DEFAULT_EVENTS, save_config
from app.services.runner import start_task_in_background
from tests.offsite.support import OffsiteApp
from tests.support.receivers import HttpReceiver, notify_idle
from tests.support.waiting import wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def target_state(offsite_app: OffsiteApp):
    [target] = offsite_targets.list_targets(offsite_app.db)
    return target


def assert_local_backup_intact(offsite_app: OffsiteApp, run: JobRun) -> None:
    path = offsite_app.backups_dir / run.file
    assert hashlib.sha256(path.read_bytes()).hexdigest() == run.sha256
    assert not list(offsite_app.backups_dir.glob(".offsite-*"))  # no sealed leftovers


def assert_a_later_run_uploads(offsite_app: OffsiteApp) -> None:
    offsite_app.write_rows(10)
    run = offsite_app.backup().run
    assert run.status == "success", run.error
    assert f"app/{run.file}.zst.age" in offsite_app.s3.objects()
    assert target_state(offsite_app).last_result == "ok"


def running_phase(offsite_app: OffsiteApp, run_id: int) -> tuple[str | None, int | None]:
    with offsite_app.db.session() as session:
        run = session.get(JobRun, run_id)
        return run.phase, run.progress


def test_server_killed_mid_upload(offsite_app):
    offsite_app.add_target()
    offsite_app.write_random(80)  # 80 MB that do not compress: a multipart upload takes a moment
    with offsite_app.app.app_context():
        run = start_task_in_background(offsite_app.app.config, offsite_app.db, BACKUP_TASK)

    def sending():
        return running_phase(offsite_app, run.id)[0] == "uploading"

    wait_for(sending, timeout=60, interval=0.005, message="the upload never started sending")
    offsite_app.s3.kill()
    finished = wait_for(lambda: (r := _run(offsite_app, run.id)).status != "running" and r, timeout=60)

    assert finished.status == "warning"
    assert "Cannot connect to" in finished.error or "connection" in finished.error.lower()
    assert_local_backup_intact(offsite_app, finished)
    assert target_state(offsite_app).last_result == "failed"
    offsite_app.s3.restart()
    assert_a_later_run_uploads(offsite_app)


def _run(offsite_app: OffsiteApp, run_id: int) -> JobRun:
    with offsite_app.db.session() as session:
        return session.get(JobRun, run_id)


def test_wrong_secret_key(offsite_app):
    created = offsite_app.add_target(secret_key="this-is-not-the-secret-key-of-that-server")
    offsite_app.write_rows(10)
    run = offsite_app.backup().run
    assert run.status == "warning" and "refused the access key or secret key" in run.error
    assert "this-is-not-the-secret" not in run.error + (target_state(offsite_app).last_message or "")
    assert_local_backup_intact(offsite_app, run)
    offsite_app.client.put(f"/api/v1/settings/offsite/{created['id']}", json={"secret_key": offsite_app.s3.secret_key})
    assert_a_later_run_uploads(offsite_app)


def test_missing_bucket(offsite_app):
    offsite_app.add_target(bucket="not-made-yet")
    offsite_app.write_rows(10)
    run = offsite_app.backup().run
    assert run.status == "warning" and "The bucket not-made-yet does not exist" in run.error
    assert target_state(offsite_app).last_message.endswith("does not exist on " + offsite_app.s3.endpoint + ".")
    assert_local_backup_intact(offsite_app, run)
    offsite_app.s3.make_bucket("not-made-yet")
    offsite_app.write_rows(10)
    assert offsite_app.backup().run.status == "success"


def test_server_disk_full(offsite_app):
    offsite_app.add_target()
    offsite_app.s3.restart(file_size_limit=256 * 1024)  # the server's writes fail past 256 KiB
    offsite_app.write_random(1)
    run = offsite_app.backup().run
    assert run.status == "warning", run.error
    assert "The server answered with an error" in run.error or "no room" in run.error
    assert_local_backup_intact(offsite_app, run)
    assert target_state(offsite_app).last_result == "failed"
    assert not [key for key in offsite_app.s3.objects() if key.endswith(".zst.age")]
    offsite_app.s3.restart(file_size_limit=None)
    assert_a_later_run_uploads(offsite_app)


def test_a_hanging_server_times_out(offsite_app):
    offsite_app.add_target()
    offsite_app.write_rows(10)
    offsite_app.s3.pause()
    try:
        run = offsite_app.backup().run
    finally:
        offsite_app.s3.resume()
    assert run.status == "warning"
    assert "did not answer within 3 s" in run.error
    assert_local_backup_intact(offsite_app, run)
    assert_a_later_run_uploads(offsite_app)


def test_an_offsite_failure_is_notified_once_and_its_recovery_too(offsite_app):
    created = offsite_app.add_target(secret_key="this-is-not-the-secret-key-of-that-server")
    with HttpReceiver() as http:
        save_config(offsite_app.db, [f"json://127.0.0.1:{http.port}/hook"], list(DEFAULT_EVENTS), None)
        for _ in range(2):
            offsite_app.write_rows(10)
            assert offsite_app.backup().run.status == "warning"
            wait_for(notify_idle, timeout=20)
        titles = [post.json()["title"] for post in http.posts()]
        assert titles == ["Backups: off-site upload to rclone failed"]
        assert "refused the access key" in http.posts()[0].json()["message"]
        offsite_app.client.put(
            f"/api/v1/settings/offsite/{created['id']}", json={"secret_key": offsite_app.s3.secret_key}
        )
        offsite_app.write_rows(10)
        assert offsite_app.backup().run.status == "success"
        wait_for(notify_idle, timeout=20)
        titles = [post.json()["title"] for post in http.posts()]
        assert titles[1:] == ["Backups: off-site upload to rclone recovered"]


def test_the_synchronous_api_the_cli_and_the_no_javascript_page_say_success_with_warnings(make_app, s3):
    app = make_app(SCHEDULER_ENABLED=False, OFFSITE_TIMEOUT_SECONDS=3)
    offsite_app = OffsiteApp(app, s3)
    offsite_app.add_target(bucket="not-made-yet")
    offsite_app.write_rows(10)

    answer = offsite_app.client.post("/api/v1/settings/backup-db")
    assert answer.status_code == 200
    assert answer.json["status"] == "warning"
    assert "The bucket not-made-yet does not exist" in answer.json["warnings"][0]

    result = app.test_cli_runner().invoke(args=["backup", "run"])
    assert result.exit_code == 3
    assert "Warning: off-site copy to rclone: The bucket not-made-yet does not exist" in result.output

    page = offsite_app.client.post("/settings/backups", headers={"HX-Request": "true"})
    text = page.get_data(as_text=True)
    assert "created and verified here, with warnings" in text and "toast-error" in text


def test_a_key_that_may_not_delete_keeps_uploading_and_says_old_copies_stay(offsite_app):
    """Append-only keys (against ransomware) are a good setup: the server refuses deletes, so
    "Keep last" cannot prune, yet every copy is uploaded and verified. The refusal is real:
    the old object's file on the server is made immutable (chattr +i)."""
    offsite_app.add_target(keep_last=1)
    offsite_app.write_rows(10)
    first = offsite_app.backup().run
    stored = offsite_app.s3.objects()[f"app/{first.file}.zst.age"]
    subprocess.run(["chattr", "+i", str(stored)], check=True)
    try:
        offsite_app.write_rows(10)
        second = offsite_app.backup().run
    finally:
        subprocess.run(["chattr", "-i", str(stored)], check=True)
    assert second.status == "success", second.error
    assert f"app/{second.file}.zst.age" in offsite_app.s3.objects()
    target = target_state(offsite_app)
    assert target.last_result == "ok"
    assert "uploaded and verified" in target.last_message and "older copies could not be removed" in target.last_message


def test_healthz_warns_of_a_failed_copy_without_details_and_stays_up(offsite_app):
    offsite_app.add_target(bucket="secret-bucket-name")
    offsite_app.write_rows(10)
    assert offsite_app.backup().run.status == "warning"
    answer = offsite_app.client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json["warnings"][-1] == (
        "The last Database backup run had warnings (an off-site copy failed); see the Settings page."
    )  # after the SQLite WAL-reset warning on versions that have the bug
    assert "secret-bucket-name" not in answer.get_data(as_text=True)
    assert offsite_app.s3.endpoint not in answer.get_data(as_text=True)


KILLED_UPLOAD = """
import sys
from app import create_app
from app.services.backup_tasks import BACKUP_TASK
from app.services.runner import run_task_now
app = create_app({"INSTANCE_PATH": sys.argv[1], "SECRET_KEY": "test-secret", "OFFSITE_TIMEOUT_SECONDS": 60})
with app.app_context():
    run_task_now(app.config, app.extensions["db"], BACKUP_TASK)
"""


def test_the_app_killed_while_uploading_closes_the_run_as_a_warning_naming_its_backup(offsite_app):
    """SIGKILL of the process doing the run, in its off-site phase (the S3 server hangs)."""
    offsite_app.add_target()
    offsite_app.write_rows(10)
    offsite_app.s3.pause()
    instance = offsite_app.app.config["INSTANCE_PATH"]
    child = subprocess.Popen([sys.executable, "-c", KILLED_UPLOAD, instance], cwd=PROJECT_ROOT)
    try:

        def uploading():
            with offsite_app.db.session() as session:
                run = session.scalars(select(JobRun).order_by(JobRun.id.desc())).first()
                return run if run is not None and run.phase == "uploading" else None

        run = wait_for(uploading, timeout=30, interval=0.05, message="the child never reached the upload")
        assert run.file is not None  # named before the off-site phase
        assert list(offsite_app.backups_dir.glob(".offsite-up-*.tmp"))
        child.kill()
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
        offsite_app.s3.resume()

    offsite_app.write_rows(10)
    later = offsite_app.backup().run  # claiming the task closes the dead run and cleans up
    assert later.status == "success", later.error
    with offsite_app.db.session() as session:
        dead = session.get(JobRun, run.id)
    assert dead.status == "warning"
    assert (
        dead.error
        == f"The process stopped during the off-site upload; the local backup {run.file} is verified and kept."
    )
    assert (offsite_app.backups_dir / run.file).exists()
    assert not list(offsite_app.backups_dir.glob(".offsite-up-*.tmp"))


def test_a_restore_stops_an_off_site_upload_instead_of_waiting_for_it(offsite_app):
    """An emergency restore must not wait minutes for an upload over a slow line: the off-site
    phase (its local backup already made) stops, and the restore runs."""
    offsite_app.add_target()
    offsite_app.write_rows(10)
    first = offsite_app.backup().run  # a backup to restore later
    offsite_app.write_random(200)  # 200 MB that do not compress: the upload takes a while
    with offsite_app.app.app_context():
        busy = start_task_in_background(offsite_app.app.config, offsite_app.db, BACKUP_TASK)
    wait_for(lambda: running_phase(offsite_app, busy.id)[0] == "uploading", timeout=60, interval=0.01)

    answer = offsite_app.client.post(f"/api/v1/settings/backups/{first.file}/restore", json={"confirm": first.file})
    assert answer.status_code == 202, answer.json
    restore_id = answer.json["run"]["id"]
    stopped = wait_for(lambda: (r := _run(offsite_app, busy.id)).status != "running" and r, timeout=30)
    assert stopped.status == "warning"
    assert "cancelled: a restore was asked for and goes first" in stopped.error
    assert_local_backup_intact(offsite_app, stopped)
    restored = wait_for(lambda: (r := _run(offsite_app, restore_id)).status != "running" and r, timeout=60)
    assert restored.status == "success", restored.error
    assert target_state(offsite_app).last_result == "ok"  # a cancel is not the target's failure
