"""Stale notifications from the real leader under gunicorn (3 workers): one message, none from followers."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.services.backups import backup_lock
from tests.support.receivers import HttpReceiver
from tests.support.server import GunicornServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

SECRET = "Hunter2Secret9"


def test_a_stale_schedule_is_told_once_by_the_leader_and_never_by_followers(tmp_path):
    server = GunicornServer(tmp_path / "instance", workers=3, NOTIFY_TIMEOUT_SECONDS="2").start()
    lock = backup_lock(Path(server.instance / "app.db"))
    try:
        with HttpReceiver() as http:
            code, body = server.request(
                "PUT",
                "/api/v1/settings/notifications",
                {"urls": [f"json://user:{SECRET}@127.0.0.1:{http.port}/hook"], "events": ["stale"], "ping_url": None},
            )
            assert code == 200, body
            # The scheduler is held off: every fire waits for the backup lock, so nothing succeeds.
            assert lock.try_acquire()
            code, body = server.request(
                "POST", "/api/v1/settings/scheduler/backup", {"mode": "cron", "cron": "* * * * *"}
            )
            assert code == 200, body
            saved_long_ago = (datetime.now(UTC) - timedelta(minutes=10)).replace(tzinfo=None).isoformat(" ")
            with sqlite3.connect(server.instance / "state.db", timeout=10) as connection:
                connection.execute("UPDATE schedule_config SET updated_at = ?", (saved_long_ago,))
            connection.close()
            # The leader checks once a minute (its first check, at start, found no URL saved).
            wait_for(lambda: http.posts(), timeout=75, interval=0.5)
            time.sleep(5)  # every worker ran its loop many times meanwhile
            (post,) = http.posts()
            assert post.json()["title"] == "Backups: Database backup is stale"
            senders = {line.split()[2] for line in server.log().splitlines() if "notification stale sent" in line}
            assert len(senders) == 1  # one process (the leader) sent it
            assert SECRET not in server.log()  # gunicorn's log: app, access and Apprise lines
            assert SECRET not in str(server.request("GET", "/api/v1/settings/notifications")[1])
    finally:
        lock.release()
        server.stop()
