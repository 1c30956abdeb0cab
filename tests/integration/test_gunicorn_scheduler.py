"""The real app under gunicorn with several workers, on the real clock.

These tests wait for real minute boundaries: they are slow by nature, and they are the
proof that a schedule fires exactly once per fire time across processes, survives the
death of the leading worker, survives a restart, and catches up after downtime.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support.server import GunicornServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def finished_runs(server: GunicornServer) -> list[tuple]:
    """(trigger, status, scheduled_for, pid, file) of finished runs, oldest first."""
    return server.query(
        "SELECT trigger, status, scheduled_for, pid, file FROM job_run WHERE status != 'running' ORDER BY id"
    )


def applied_with_next_run(server: GunicornServer) -> dict:
    """The job once the leader applied it and the job store holds its next fire time."""
    return wait_for(lambda: (job := server.wait_until_applied()) and job["next_run_at"] and job, 10)


def seconds_to_next_minute() -> float:
    return 60 - time.time() % 60


def test_every_minute_schedule_fires_once_per_fire_time_across_three_workers_and_survives_leader_kill(gunicorn):
    srv = gunicorn(workers=3)
    status, _ = srv.request("POST", "/api/v1/settings/scheduler/backup", {"mode": "cron", "cron": "* * * * *"})
    assert status == 200
    applied_with_next_run(srv)
    first_leader = wait_for(srv.leader_pid, 10)
    assert first_leader in srv.worker_pids()

    # One fire with three workers running: exactly one run, by the leader.
    wait_for(lambda: finished_runs(srv), 75)
    time.sleep(2)  # real clock under test: a duplicate of this fire would have started by now
    (first,) = finished_runs(srv)
    assert first[:2] == ("scheduled", "success")
    assert first[3] == first_leader
    assert (srv.instance / "backups" / first[4]).is_file()

    # Kill the leading worker outright: another worker takes over within 10 s...
    if seconds_to_next_minute() < 15:  # not across a fire time: that would blur what is proven
        wait_for(lambda: seconds_to_next_minute() > 45, 20, interval=0.5)
    os.kill(first_leader, signal.SIGKILL)
    killed_at = time.monotonic()
    new_leader = wait_for(lambda: (pid := srv.leader_pid(fresh_within=3)) and pid != first_leader and pid, 15)
    assert time.monotonic() - killed_at < 10
    assert new_leader in srv.worker_pids()

    # ...and the next fire time still produces exactly one run, from the new leader.
    wait_for(lambda: len(finished_runs(srv)) >= 2, 75)
    time.sleep(2)  # real clock under test, as above
    runs = finished_runs(srv)
    assert len(runs) == 2, runs
    assert runs[-1][:2] == ("scheduled", "success")
    assert runs[-1][3] == new_leader
    assert len({run[2] for run in runs}) == 2  # one run per fire time
    assert len({run[4] for run in runs}) == 2


def test_restart_keeps_the_schedule_and_a_fire_time_missed_while_down_runs_once_as_catch_up(gunicorn):
    srv = gunicorn(workers=2)
    srv.request("POST", "/api/v1/settings/scheduler/backup", {"mode": "interval", "every_hours": 2})
    job = applied_with_next_run(srv)
    srv.stop()
    srv.start()  # takes over a second: a re-added interval job would count from a later time
    after = applied_with_next_run(srv)
    assert after["schedule"] == {"mode": "interval", "every_hours": 2}
    assert after["next_run_at"] == job["next_run_at"]  # not pushed back by the restart

    # Every minute; then down across a fire time, and back within the grace.
    srv.request("POST", "/api/v1/settings/scheduler/backup", {"mode": "cron", "cron": "* * * * *"})
    applied_with_next_run(srv)
    if seconds_to_next_minute() < 10:  # stop well before a fire time, not during one
        wait_for(lambda: seconds_to_next_minute() > 50, 15, interval=0.5)
        wait_for(lambda: len(finished_runs(srv)) > 0, 20)
    fired_before = len(finished_runs(srv))
    srv.stop()
    time.sleep(seconds_to_next_minute() + 3)  # real clock under test: down across a fire time
    assert len(finished_runs(srv)) == fired_before
    srv.start()
    wait_for(lambda: len(finished_runs(srv)) > fired_before, 20)
    time.sleep(2)  # real clock under test: a second catch-up run would have started by now
    runs = finished_runs(srv)[fired_before:]
    assert [(run[0], run[1]) for run in runs] == [("catch-up", "success")], runs
