"""4. Scheduler: delay from a fire time to its run's start, and the leader's idle CPU.

A separate server with its own small database: first the leader's CPU over an idle
minute (no schedule), then a ``* * * * *`` cron saved through the API, and the delay
``job_run.started_at - job_run.scheduled_for`` of the next ``fires`` runs. This takes
minutes of wall clock but almost no CPU, so it runs beside the other measurements; each
fire records which of them was running at the time.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from bench.servers import parse_utc, query, start_server, state_database_of, wait_for_leader
from bench.system import CpuWatch, cpu_seconds

IDLE_SECONDS = 60.0
POLL_SECONDS = 1.0


class SchedulerTrack(threading.Thread):
    """Runs the scheduler measurement in the background; ``result`` holds it when done."""

    def __init__(self, fires: int, log) -> None:
        super().__init__(name="bench-scheduler", daemon=True)
        self.fires = fires
        self.log = log
        self.result: dict = {}
        self.ready = threading.Event()  # set once the server is up and the idle minute begins

    def run(self) -> None:
        try:
            self.result = self._measure()
        except Exception as exc:  # reported in the results, not lost in a thread
            self.result = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            self.ready.set()

    def _measure(self) -> dict:
        server = start_server("scheduler")
        try:
            leader = wait_for_leader(server)
            result = {"leader_pid": leader, "idle": self._idle_cpu(leader)}
            self.log(f"  scheduler: leader idle CPU {result['idle']['percent_of_core']} % of a core")
            if self.fires:
                result.update(self._fires(server))
            return result
        finally:
            server.stop()

    def _idle_cpu(self, leader: int) -> dict:
        before, started, watch = cpu_seconds(leader), time.monotonic(), CpuWatch()
        self.ready.set()
        time.sleep(IDLE_SECONDS)
        used, wall = cpu_seconds(leader) - before, time.monotonic() - started
        return {
            "seconds": round(wall, 1),
            "cpu_seconds": round(used, 3),
            "percent_of_core": round(100 * used / wall, 2),
            "machine": watch.stop(),
        }

    def _fires(self, server) -> dict:
        status, body = server.request(
            "POST", "/api/v1/settings/scheduler/backup", {"mode": "cron", "cron": "* * * * *"}
        )
        if status != 200:
            raise RuntimeError(f"saving the cron schedule answered {status}: {body}")
        database = state_database_of(server)
        watch = CpuWatch()
        deadline = time.monotonic() + 60 * (self.fires + 1) + 30
        rows: list[tuple] = []
        while time.monotonic() < deadline:
            rows = query(
                database,
                "SELECT id, trigger, status, scheduled_for, started_at, finished_at, error FROM job_run "
                "WHERE trigger != 'manual' AND status != 'running' ORDER BY id",
            )
            if len(rows) >= self.fires:
                break
            time.sleep(POLL_SECONDS)
        fires = [_fire(row) for row in rows[: self.fires]]
        for number, fire in enumerate(fires, 1):
            self.log(f"  scheduler: fire {number}/{self.fires} started {fire['delay_ms']} ms after its time")
        return {"fires_wanted": self.fires, "fires": fires, "machine": watch.stop()}


def _fire(row: tuple) -> dict:
    _, trigger, status, scheduled_for, started_at, finished_at, error = row
    due, started, finished = parse_utc(scheduled_for), parse_utc(started_at), parse_utc(finished_at)
    return {
        "trigger": trigger,
        "status": status,
        "scheduled_for": due.isoformat() if due else None,
        "delay_ms": round((started - due).total_seconds() * 1000, 1) if due and started else None,
        "run_ms": round((finished - started).total_seconds() * 1000, 1) if finished and started else None,
        "error": error,
    }


def annotate(fires: list[dict], timeline: list[tuple[str, float, float]]) -> None:
    """Note beside each fire which other measurement was running at its due time."""
    for fire in fires:
        if not fire.get("scheduled_for"):
            continue
        moment = datetime.fromisoformat(fire["scheduled_for"]).astimezone(UTC).timestamp()
        fire["during"] = [name for name, start, end in timeline if start <= moment <= end] or ["nothing else"]
