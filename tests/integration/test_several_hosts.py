"""Three "hosts" (gunicorn instances with their own instance folders, so no file lock is shared)
on one PostgreSQL state database, on the real clock.

The proof that the database decides: every fire time of a `* * * * *` schedule runs once
while the leading host is killed, paused past its lease, and cut off from the database.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import datetime
from itertools import pairwise

import pytest

from tests.support.data import fill_items
from tests.support.server import GunicornServer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("postgres")]

LEASE_SECONDS = 3  # the leader's and each run's; a host that stops renewing is replaced after this
HOST_ENV = {"SCHEDULER_LEASE_SECONDS": str(LEASE_SECONDS)}


@pytest.fixture
def hosts(gunicorn, postgres_url):
    """Start ``count`` hosts sharing one state database: ``hosts(count, prepare=None)``."""

    def start(count: int = 3, prepare=None) -> list[GunicornServer]:
        return [
            gunicorn(f"host{index}", workers=2, prepare=prepare, STATE_DATABASE_URL=postgres_url, **HOST_ENV)
            for index in range(count)
        ]

    return start


def fire_runs(server: GunicornServer) -> list[tuple]:
    """(scheduled_for, trigger, status, pid) of every run with a fire time, oldest first."""
    return server.query(
        "SELECT scheduled_for, trigger, status, pid FROM job_run WHERE scheduled_for IS NOT NULL ORDER BY id"
    )


def finished(server: GunicornServer) -> list[tuple]:
    return [run for run in fire_runs(server) if run[2] != "running"]


def leader(servers: list[GunicornServer], fresh_within: float = 3) -> tuple[GunicornServer, int] | None:
    """The host and pid of the worker whose heartbeat is fresh, if any."""
    pid = servers[0].leader_pid(fresh_within=fresh_within)
    for server in servers:
        if server.process.poll() is None and pid in server.worker_pids():
            return server, pid
    return None


def seconds_to_next_minute() -> float:
    return 60 - time.time() % 60


def wait_for_fire(server: GunicornServer, count: int) -> list[tuple]:
    """Wait until ``count`` fire times have finished runs; return them."""
    wait_for(lambda: len(finished(server)) >= count, 80, interval=0.2, message=f"fire {count} did not run")
    time.sleep(2)  # real clock under test: a duplicate of this fire would have started by now
    return finished(server)


def signal_all(server: GunicornServer, sig: int) -> None:
    for pid in server.pids():
        os.kill(pid, sig)


def test_every_fire_time_runs_once_while_the_leading_host_is_killed_paused_and_cut_off(hosts, postgres):
    servers = hosts(3)
    status, _ = servers[0].request("POST", "/api/v1/settings/scheduler/backup", {"mode": "cron", "cron": "* * * * *"})
    assert status == 200
    servers[1].wait_until_applied()  # any host sees what the leader applied
    first_host, first_pid = wait_for(lambda: leader(servers), 15)
    table = []  # (fault, fire time, runs of it, pid that ran it)

    # 1. Every host up: one run, by the leader.
    runs = wait_for_fire(servers[0], 1)
    assert runs[-1][1:3] == ("scheduled", "success") and runs[-1][3] == first_pid
    table.append(("none", runs[-1][0], 1, first_pid))

    # 2. SIGKILL every process of the leading host: another leads within 15 s, the next fire runs once.
    if seconds_to_next_minute() < 20:  # not across a fire time: that would blur what is proven
        wait_for(lambda: seconds_to_next_minute() > 50, 25, interval=0.5)
    signal_all(first_host, signal.SIGKILL)
    killed_at = time.monotonic()
    second_host, second_pid = wait_for(lambda: (found := leader(servers)) and found[0] is not first_host and found, 15)
    assert time.monotonic() - killed_at < 15
    alive = [server for server in servers if server is not first_host]
    runs = wait_for_fire(alive[0], 2)
    assert runs[-1][1:3] == ("scheduled", "success") and runs[-1][3] == second_pid, runs
    table.append(("SIGKILL of the leading host", runs[-1][0], 1, second_pid))

    # 3. SIGSTOP the leading host across a fire time, past its lease; SIGCONT after the fire.
    wait_for(lambda: 6 < seconds_to_next_minute() < 10, 60, interval=0.2)
    signal_all(second_host, signal.SIGSTOP)
    try:
        third_host, third_pid = wait_for(
            lambda: (found := leader(servers, fresh_within=2)) and found[0] is not second_host and found, 15
        )
        runs = wait_for_fire(third_host, 3)
    finally:
        signal_all(second_host, signal.SIGCONT)
    assert runs[-1][1:3] == ("scheduled", "success") and runs[-1][3] == third_pid, runs
    # The old leader wakes, finds its lease gone and steps down; the new one keeps leading.
    wait_for(lambda: "lost the scheduler leadership" in second_host.log(), 10)
    time.sleep(LEASE_SECONDS)
    assert leader(servers)[1] == third_pid
    table.append(("SIGSTOP of the leader past its lease", runs[-1][0], 1, third_pid))

    # 4. The database ends every connection of the leading process (as a failover would).
    terminated = postgres.psql(
        f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE '% pid {third_pid}'"
    )
    assert int(terminated) >= 1
    runs = wait_for_fire(third_host, 4)
    assert runs[-1][2] == "success", runs
    table.append(("pg_terminate_backend of the leader's connections", runs[-1][0], 1, runs[-1][3]))

    # Runs == fire times, each once, one minute apart; nothing recorded as missed or failed.
    fire_times = [run[0] for run in runs]
    assert len(set(fire_times)) == len(fire_times) == 4, runs
    assert all((later - earlier).total_seconds() == 60 for earlier, later in pairwise(fire_times))
    assert {run[2] for run in runs} == {"success"}
    print_table(table)


def print_table(table: list[tuple]) -> None:
    """The fault table for the issue's closing note (shown with pytest -s)."""
    for fault, fire_time, count, pid in table:
        stamp = fire_time.isoformat() if isinstance(fire_time, datetime) else fire_time
        print(f"{fault:50} {stamp}  runs={count}  by pid {pid}")


def test_a_fire_time_missed_while_every_host_was_down_runs_once_when_all_come_back(hosts):
    servers = hosts(3)
    servers[0].request("POST", "/api/v1/settings/scheduler/backup", {"mode": "cron", "cron": "* * * * *"})
    wait_for(lambda: (job := servers[0].wait_until_applied()) and job["next_run_at"], 10)
    if seconds_to_next_minute() < 10:  # stop well before a fire time, not during one
        wait_for(lambda: seconds_to_next_minute() > 50, 15, interval=0.5)
        wait_for(lambda: finished(servers[0]), 20)
    fired_before = len(finished(servers[0]))
    for server in servers:
        server.stop()
    time.sleep(seconds_to_next_minute() + 2)  # real clock under test: every host down across a fire time
    assert len(finished(servers[0])) == fired_before
    starting = [threading.Thread(target=server.start) for server in servers]  # all three at once
    for thread in starting:
        thread.start()
    for thread in starting:
        thread.join(60)
    wait_for(lambda: len(finished(servers[0])) > fired_before, 30)
    time.sleep(3)  # real clock under test: a second catch-up run would have started by now
    runs = finished(servers[0])[fired_before:]
    assert [(run[1], run[2]) for run in runs] == [("catch-up", "success")], runs


def test_run_now_posted_to_three_hosts_at_once_is_accepted_once(hosts):
    # A data database big enough that the accepted backup is still running when the others ask.
    servers = hosts(
        3, prepare=lambda instance: (instance.mkdir(), fill_items(instance / "app.db", 300, blob_bytes=100_000))
    )
    start = threading.Barrier(3)
    answers = [None] * 3

    def post(index: int) -> None:
        start.wait()
        answers[index] = servers[index].request("POST", "/api/v1/settings/scheduler/backup/run")

    threads = [threading.Thread(target=post, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    codes = sorted(code for code, _ in answers)
    assert codes == [202, 409, 409], answers
    accepted = next(body["run"]["id"] for code, body in answers if code == 202)
    assert all(body["running"]["id"] == accepted for code, body in answers if code == 409), answers
    wait_for(lambda: servers[0].query("SELECT status FROM job_run WHERE id = ?", accepted)[0][0] == "success", 30)
    assert len(servers[0].query("SELECT id FROM job_run")) == 1
