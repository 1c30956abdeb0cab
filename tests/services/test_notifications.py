"""Notifications with real receivers: an SMTP server and an HTTP server on 127.0.0.1, real failing backups."""

from __future__ import annotations

import email
import time
from datetime import timedelta
from pathlib import Path

import pytest

from app.models import NotificationSend, utcnow
from app.services import notifications
from app.services.backup_tasks import restore_now
from app.services.notification_settings import DEFAULT_EVENTS, load_config, save_config
from app.services.notifications import offsite_upload_failed
from app.services.pings import run_uuid
from app.services.runner import claim_task, complete_task, run_task_now
from tests.support.receivers import HttpReceiver, SmtpReceiver, notify_idle
from tests.support.server import free_port
from tests.support.waiting import wait_for


def settle() -> None:
    wait_for(notify_idle, timeout=20)


class Clock:
    """An injectable clock (``NOTIFY_CLOCK``) so reminders are tested without waiting hours."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def broken_folder(tmp_path):
    """A backups folder that cannot exist (its parent is a file); ``fix()`` makes it a folder."""
    blocker = tmp_path / "afile"
    blocker.write_text("a regular file, not a folder\n")

    class Folder:
        path = blocker / "backups"

        @staticmethod
        def fix() -> None:
            blocker.unlink()

    return Folder


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def failing_app(make_app, broken_folder, clock):
    return make_app(
        BACKUPS_DIR=str(broken_folder.path),
        NOTIFY_TIMEOUT_SECONDS="2",
        PUBLIC_URL="https://backups.example.org",
        NOTIFY_CLOCK=clock,
    )


def mail_text(message: str) -> str:
    parsed = email.message_from_string(message)
    parts = [part for part in parsed.walk() if part.get_content_type() == "text/plain"]
    return parsed["Subject"] + "\n" + parts[0].get_payload(decode=True).decode()


def configure(app, urls, events=DEFAULT_EVENTS, ping_url=None):
    save_config(app.extensions["db"], list(urls), list(events), ping_url)


def test_a_failed_backup_sends_one_email_and_one_webhook_then_one_recovered(failing_app, broken_folder):
    db = failing_app.extensions["db"]
    with SmtpReceiver() as smtp, HttpReceiver() as http:
        configure(failing_app, [smtp.mailto(), f"json://127.0.0.1:{http.port}/hook"])
        for _ in range(3):  # the fault stays: still one message until the reminder interval
            outcome = run_task_now(failing_app.config, db, "backup_db")
            assert outcome.error is not None
        settle()
        assert len(smtp.messages) == 1
        assert len(http.posts()) == 1
        text = mail_text(smtp.messages[0])
        assert "Database backup failed" in text
        assert str(broken_folder.path) in text  # the error text
        assert "CET (Europe/Berlin)" in text  # when, with the zone
        assert "https://backups.example.org/settings" in text
        hook = http.posts()[0].json()
        assert hook["type"] == "failure" and str(broken_folder.path) in hook["message"]

        broken_folder.fix()
        for _ in range(2):
            assert run_task_now(failing_app.config, db, "backup_db").error is None
        settle()
        assert len(smtp.messages) == 2
        assert len(http.posts()) == 2
        assert "recovered" in mail_text(smtp.messages[1])
        assert http.posts()[1].json()["type"] == "success"


def test_reminders_come_only_after_the_interval(failing_app, clock):
    db = failing_app.extensions["db"]
    with HttpReceiver() as http:
        configure(failing_app, [f"json://127.0.0.1:{http.port}/hook"])
        for hours in (0, 1, 22):
            clock.advance(hours=hours)
            run_task_now(failing_app.config, db, "backup_db")
            settle()
        assert len(http.posts()) == 1
        notifications.check_stale_and_reminders(failing_app.config, db)  # the leader's minute check
        assert len(http.posts()) == 1
        clock.advance(hours=1, minutes=1)  # 24 h 1 min after the first message
        notifications.check_stale_and_reminders(failing_app.config, db)
        run_task_now(failing_app.config, db, "backup_db")
        settle()
        assert len(http.posts()) == 2
        assert http.posts()[1].json()["title"].startswith("Reminder: ")


def test_a_hanging_receiver_neither_delays_nor_fails_the_run(failing_app, broken_folder):
    db = failing_app.extensions["db"]
    broken_folder.fix()
    with HttpReceiver(hang=True) as hanging:
        configure(failing_app, [f"json://127.0.0.1:{hanging.port}/hook"], events=["success"])
        started = time.monotonic()
        outcome = run_task_now(failing_app.config, db, "backup_db")
        took = time.monotonic() - started
        assert outcome.error is None
        assert took < 1.0, f"the run took {took:.2f} s"
        wait_for(lambda: hanging.posts(), timeout=5)
        settle()
    with db.session() as session:
        send = session.query(NotificationSend).one()
    assert not send.ok and "did not finish" in send.error
    assert send.elapsed_ms < 2000 + 1000  # NOTIFY_TIMEOUT_SECONDS=2, plus a margin
    page = failing_app.test_client().get("/settings").text
    assert "Failed: " in page and "did not finish" in page


def test_a_refusing_receiver_is_recorded_and_shown(failing_app):
    db = failing_app.extensions["db"]
    configure(failing_app, [f"json://127.0.0.1:{free_port()}/hook"])
    run_task_now(failing_app.config, db, "backup_db")
    settle()
    answer = failing_app.test_client().get("/api/v1/settings/notifications").get_json()
    last = answer["last_sends"][0]["last_send"]
    assert last["ok"] is False and "Connection error" in last["error"] and last["event"] == "run_failed"
    assert "Connection error" in failing_app.test_client().get("/settings").text


def test_a_scheduled_backup_pings_start_then_success_or_fail_with_one_run_id(failing_app, broken_folder):
    db = failing_app.extensions["db"]
    with HttpReceiver() as http:
        configure(failing_app, [], ping_url=f"{http.url}/ping/0b1c2d3e-secret")
        run, lock = claim_task(failing_app.config, db, "backup_db", "scheduled")
        complete_task(failing_app.config, db, run, lock)
        settle()
        start, fail = http.requests
        assert (start.method, start.path) == ("GET", "/ping/0b1c2d3e-secret/start")
        assert (fail.method, fail.path) == ("POST", "/ping/0b1c2d3e-secret/fail")
        assert start.query["rid"] == fail.query["rid"] == [run_uuid(run.id)]
        assert str(broken_folder.path) in fail.body.decode() and len(fail.body) <= 10 * 1024

        broken_folder.fix()
        run, lock = claim_task(failing_app.config, db, "backup_db", "scheduled")
        complete_task(failing_app.config, db, run, lock)
        settle()
        assert [(r.path, r.query["rid"]) for r in http.requests[2:]] == [
            ("/ping/0b1c2d3e-secret/start", [run_uuid(run.id)]),
            ("/ping/0b1c2d3e-secret", [run_uuid(run.id)]),
        ]
        run_task_now(failing_app.config, db, "backup_db")  # a manual backup does not ping
        settle()
        assert len(http.requests) == 4


def test_a_restore_done_is_told_when_chosen(failing_app, broken_folder):
    db = failing_app.extensions["db"]
    broken_folder.fix()
    with HttpReceiver() as http:
        configure(failing_app, [f"json://127.0.0.1:{http.port}/hook"], events=["restore_done"])
        name = run_task_now(failing_app.config, db, "backup_db").result["file"]
        assert restore_now(failing_app.config, db, name).error is None
        settle()
        (post,) = http.posts()
        assert post.json()["title"] == f"Backups: restore finished ({name})"
        assert "Safety backup" in post.json()["message"]


def test_an_offsite_failure_is_told_once_per_state_change(failing_app):
    db = failing_app.extensions["db"]
    with HttpReceiver() as http:
        configure(failing_app, [f"json://127.0.0.1:{http.port}/hook"])
        for _ in range(3):
            offsite_upload_failed(failing_app.config, db, "s3-eu", "403 Forbidden")
            settle()
        (post,) = http.posts()
        assert "s3-eu" in post.json()["title"] and "403 Forbidden" in post.json()["message"]


def test_send_test_and_cli_give_one_result_per_url(failing_app):
    with HttpReceiver() as http:
        refused = f"json://127.0.0.1:{free_port()}/down"
        configure(failing_app, [f"json://127.0.0.1:{http.port}/hook", refused])
        answer = failing_app.test_client().post("/api/v1/settings/notifications/test")
        assert answer.status_code == 200
        results = answer.get_json()["results"]
        assert [result["ok"] for result in results] == [True, False]
        assert http.posts()[0].json()["title"] == "Backups: test notification"
        cli = failing_app.test_cli_runner().invoke(args=["notify", "test"])
        assert cli.exit_code == 1
        assert cli.output.count("ok    ") == 1 and cli.output.count("FAILED") == 1
        assert len(http.posts()) == 2


def test_nothing_is_sent_or_tracked_without_urls(failing_app):
    db = failing_app.extensions["db"]
    run_task_now(failing_app.config, db, "backup_db")
    settle()
    assert load_config(db).urls == ()
    with db.session() as session:
        assert session.query(NotificationSend).count() == 0


def test_stale_is_told_once_by_the_minute_check_then_recovered(make_app, clock):
    from app.services.schedules import Schedule, save_schedule

    app = make_app(NOTIFY_TIMEOUT_SECONDS="2", NOTIFY_CLOCK=clock)
    db = app.extensions["db"]
    with HttpReceiver() as http:
        configure(app, [f"json://127.0.0.1:{http.port}/hook"])
        save_schedule(db, "backup_db", Schedule("cron", cron="* * * * *"))
        notifications.check_stale_and_reminders(app.config, db)
        assert http.posts() == []  # saved just now: not stale yet
        clock.advance(minutes=3)  # no success for longer than twice the 1-minute period
        for _ in range(5):  # every minute check while it lasts: still one message
            notifications.check_stale_and_reminders(app.config, db)
            clock.advance(minutes=1)
        (stale,) = http.posts()
        assert stale.json()["title"] == "Backups: Database backup is stale"
        assert "No successful run for longer than twice the schedule's period (2 min)" in stale.json()["message"]
        assert stale.json()["type"] == "warning"
        run_task_now(app.config, db, "backup_db")
        settle()
        assert len(http.posts()) == 2 and http.posts()[1].json()["title"] == "Backups: Database backup recovered"


def test_leader_tick_checks_at_most_once_a_minute(make_app, clock, monkeypatch):
    app = make_app(NOTIFY_CLOCK=clock)
    calls = []
    monkeypatch.setattr(notifications, "check_stale_and_reminders", lambda config, db: calls.append(1))
    for _ in range(30):  # the leader loop calls it every second
        notifications.leader_tick(app.config, app.extensions["db"])
    settle()
    assert calls == [1]


def test_a_failed_verification_is_its_own_event(failing_app, monkeypatch):
    from app.services.backups import BackupError
    from app.services.registry import TASKS, Task

    def verify(ctx):
        raise BackupError("backup-x.sqlite3: its sha256 no longer matches")

    backup = TASKS["backup_db"]
    monkeypatch.setitem(
        TASKS,
        "verify_backups",
        Task(
            id="verify_backups",
            title="Backup verification",
            noun="verification",
            summary="",
            lock=backup.lock,
            body=verify,
        ),
    )
    db = failing_app.extensions["db"]
    with HttpReceiver() as http:
        configure(failing_app, [f"json://127.0.0.1:{http.port}/hook"], events=["verification_failed"])
        run_task_now(failing_app.config, db, "verify_backups")
        run_task_now(failing_app.config, db, "backup_db")  # a failed backup: "run_failed", not chosen here
        settle()
        (post,) = http.posts()
        assert post.json()["title"] == "Backups: Backup verification failed"
        assert "its sha256 no longer matches" in post.json()["message"]


def test_a_failed_restore_is_told_once_and_never_reminded(make_app, clock):
    app = make_app(NOTIFY_TIMEOUT_SECONDS="2", NOTIFY_CLOCK=clock)
    db = app.extensions["db"]
    folder = Path(app.config["BACKUPS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    name = "backup-20260101T000000.000000Z-uploaded.sqlite3"
    (folder / name).write_bytes(b"not a database" * 100)
    with HttpReceiver() as http:
        configure(app, [f"json://127.0.0.1:{http.port}/hook"])
        assert restore_now(app.config, db, name).error is not None
        settle()
        assert [post.json()["title"] for post in http.posts()] == ["Backups: restore failed"]
        for _ in range(3):
            clock.advance(hours=25)
            notifications.check_stale_and_reminders(app.config, db)
            settle()
        assert len(http.posts()) == 1
