"""The real app under gunicorn with several workers, on the real clock.

These tests wait for real minute boundaries: they are slow by nature, and they are the
proof that a schedule fires exactly once per fire time across processes, survives the
death of the leading worker, survives a restart, and catches up after downtime.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.server import GunicornServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def query(server: GunicornServer, sql: str, *args) -> list[tuple]:
    connection = sqlite3.connect(server.instance / "state.db", timeout=10)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


def finished_runs(server: GunicornServer) -> list[tuple]:
    """(trigger, status, scheduled_for, pid, file) of finished runs, oldest first."""
    return query(
        server,
        "SELECT trigger, status, scheduled_for, pid, file FROM job_run WHERE status != 'running' ORDER BY id",
    )


def leader_pid(server: GunicornServer) -> int | None:
    rows = query(server, "SELECT leader_pid, heartbeat_at FROM scheduler_state")
    if not rows:
        return None
    pid, beat = rows[0]
    age = datetime.now(UTC) - datetime.fromisoformat(beat).replace(tzinfo=UTC)
    return pid if age < timedelta(seconds=10) else None


def wait_until_applied(server: GunicornServer) -> dict:
    def applied():
        status, body = server.request("GET", "/api/v1/settings/scheduler")
        job = body["jobs"][0]
        return job if status == 200 and not job["pending_apply"] and job["next_run_at"] else None

    return wait_for(applied, 10)


def seconds_to_next_minute() -> float:
    return 60 - time.time() % 60


@pytest.fixture
def server(tmp_path):
    running = []

    def start(workers: int, **env: str) -> GunicornServer:
        instance = tmp_path / "instance"
        srv = GunicornServer(instance, workers=workers, **env).start()
        running.append(srv)
        return srv

    yield start
    for srv in running:
        srv.stop()


def test_every_minute_schedule_fires_once_per_minute_across_three_workers_and_survives_leader_kill(server):
    srv = server(3)
    status, _ = srv.request("POST", "/api/v1/settings/scheduler/backup", {"mode": "cron", "cron": "* * * * *"})
    assert status == 200
    wait_until_applied(srv)
    first_leader = wait_for(lambda: leader_pid(srv), 10)
    assert first_leader in srv.worker_pids()

    wait_for(lambda: len(finished_runs(srv)) >= 3, 4 * 60)
    time.sleep(2)  # a duplicate of the third fire would show up now
    runs = finished_runs(srv)
    assert len(runs) == 3, runs
    assert {run[:2] for run in runs} == {("scheduled", "success")}
    fire_times = [datetime.fromisoformat(run[2]) for run in runs]
    assert [b - a for a, b in itertools.pairwise(fire_times)] == [timedelta(minutes=1)] * 2
    assert len({run[4] for run in runs}) == 3
    assert all((srv.instance / "backups" / run[4]).is_file() for run in runs)

    # Kill the leading worker outright: another worker takes over within 10 s...
    if seconds_to_next_minute() < 15:
        time.sleep(seconds_to_next_minute() + 3)
        wait_for(lambda: len(finished_runs(srv)) >= 4, 30)
    before_kill = len(finished_runs(srv))
    leader = leader_pid(srv)
    os.kill(leader, signal.SIGKILL)
    killed_at = time.monotonic()
    new_leader = wait_for(lambda: (pid := leader_pid(srv)) and pid != leader and pid, 15)
    assert time.monotonic() - killed_at < 10
    assert new_leader in srv.worker_pids()

    # ...and the next fire time still produces exactly one run, from the new leader.
    wait_for(lambda: len(finished_runs(srv)) >= before_kill + 1, 75)
    time.sleep(2)
    runs = finished_runs(srv)
    assert len(runs) == before_kill + 1, runs
    assert runs[-1][1] == "success"
    assert runs[-1][3] == new_leader
    assert len({run[2] for run in runs}) == len(runs)  # one run per fire time


def test_restart_keeps_the_schedule_and_a_fire_time_missed_while_down_runs_once_as_catch_up(server):
    srv = server(2)
    srv.request("POST", "/api/v1/settings/scheduler/backup", {"mode": "interval", "every_hours": 2})
    job = wait_until_applied(srv)
    srv.stop()
    time.sleep(1.5)
    srv.start()
    after = wait_until_applied(srv)
    assert after["schedule"] == {"mode": "interval", "every_hours": 2}
    assert after["next_run_at"] == job["next_run_at"]  # not pushed back by the restart

    # Every minute; then down across a fire time, and back within the grace.
    srv.request("POST", "/api/v1/settings/scheduler/backup", {"mode": "cron", "cron": "* * * * *"})
    wait_until_applied(srv)
    if seconds_to_next_minute() < 10:
        time.sleep(seconds_to_next_minute() + 3)
    fired_before = len(finished_runs(srv))
    srv.stop()
    time.sleep(seconds_to_next_minute() + 3)
    assert len(finished_runs(srv)) == fired_before
    srv.start()
    wait_for(lambda: len(finished_runs(srv)) > fired_before, 20)
    time.sleep(2)
    runs = finished_runs(srv)[fired_before:]
    assert [(run[0], run[1]) for run in runs] == [("catch-up", "success")], runs
