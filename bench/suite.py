"""The order the measurements run in, and the bookkeeping around each of them.

The scheduler measurement spends minutes waiting for real minute boundaries, so it runs in
the background from the start; its server is up before the first measurement begins.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext

from bench.data import Dataset
from bench.load import SyntheticLoad
from bench.system import CpuWatch


class Run:
    """Results and a timeline of which measurement ran when (wall clock)."""

    def __init__(self, log) -> None:
        self.log = log
        self.results: dict = {}
        self.timeline: list[tuple[str, float, float]] = []

    @contextmanager
    def measure(self, name: str, key: str, load: bool = False):
        """Record the measurement stored under ``key``: its span, the machine's load, any failure.

        With ``load``, the synthetic load (bench/load.py) runs for the whole measurement.
        """
        self.log(f"{name} ..." + (" (with the synthetic load)" if load else ""))
        begin, watch = time.time(), CpuWatch()
        synthetic = SyntheticLoad() if load else None
        try:
            with synthetic or nullcontext():
                yield
        except Exception as exc:  # one failed measurement must not cost the others
            self.log(f"{name} failed: {type(exc).__name__}: {exc}")
            self.results[key] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            self.timeline.append((name, begin, time.time()))
            self.results.setdefault(key, {})["machine"] = watch.stop()
            self.results[key]["synthetic_load"] = synthetic.summary() if synthetic else None


def run_suite(
    only: list[str],
    dataset: Dataset,
    repeats: int,
    fires: int,
    log,
    load: bool = True,
    quick: bool = False,
    size_mb: int = 1024,
) -> dict:
    """Run the chosen measurements; return their results by key.

    ``load`` runs the synthetic load during the impact and cost measurements (issue 15's
    condition); ``quick`` keeps the impact measurement to its fewest rounds.
    """
    run = Run(log)
    track = pg_track = None
    pg_wanted = {"pg_scheduler", "pg_dump"} & set(only)
    if pg_wanted:
        from bench.several_hosts import PgSchedulerTrack, postgres_available

        if not postgres_available():
            log("PostgreSQL is not installed: skipping the several-hosts measurements (scripts/ensure-postgres)")
            pg_wanted = set()
        elif "pg_scheduler" in pg_wanted and fires:
            log(f"pg scheduler: {fires} fire(s) of a * * * * * cron across 3 hosts, in the background")
            pg_track = PgSchedulerTrack(fires, log)
            pg_track.start()
    if "scheduler" in only:
        from bench.scheduler import SchedulerTrack

        log(f"scheduler: idle minute, then {fires} fire(s) of a * * * * * cron, in the background")
        track = SchedulerTrack(fires, log)
        track.start()
        track.ready.wait(timeout=90)  # its server's start-up must not disturb the first measurement
    if "impact" in only:
        from bench.impact import measure_impact

        with run.measure("impact of a backup", "impact", load):
            run.results["impact"] = measure_impact(dataset.path, log, quick)
    if "backup" in only:
        from bench.backup_cost import measure_backup_cost

        with run.measure("backup cost", "backup_cost", load):
            run.results["backup_cost"] = measure_backup_cost(dataset.path, repeats, log)
    if "restore" in only:
        from bench.restore_cost import measure_restore_cost

        with run.measure("restore cost", "restore_cost", load):
            run.results["restore_cost"] = measure_restore_cost(dataset.path, repeats, log)
    if {"polling", "weight"} & set(only):
        _polling_and_weight(only, run)
    if "offsite" in only:
        from bench.offsite import measure_offsite

        with run.measure("off-site upload", "offsite", load):
            run.results["offsite"] = measure_offsite(dataset.path, repeats, log)
    if "notify" in only:
        from bench.notify import measure_notify

        with run.measure("notifications", "notify"):
            run.results["notify"] = measure_notify(log)
    if "pg_dump" in pg_wanted:
        from bench.several_hosts import measure_pg_dump_cost

        with run.measure("pg_dump cost", "pg_dump_cost"):
            run.results["pg_dump_cost"] = measure_pg_dump_cost(size_mb, repeats, log)
    if pg_track is not None:
        log("waiting for the several-hosts scheduler measurement ...")
        pg_track.join(timeout=60 * (fires + 4))
        run.results["pg_scheduler"] = pg_track.result or {"error": "the measurement did not finish in time"}
    if track is not None:
        from bench.scheduler import annotate

        log("waiting for the scheduler measurement ...")
        track.join(timeout=60 * (fires + 4))
        run.results["scheduler"] = track.result or {"error": "the scheduler measurement did not finish in time"}
        annotate(run.results["scheduler"].get("fires", []), run.timeline)
    return run.results


def _polling_and_weight(only: list[str], run: Run) -> None:
    from bench.page_weight import measure_page_weight
    from bench.polling import measure_polling
    from bench.servers import server_pids, start_server

    server = start_server("polling")
    try:
        _give_status_content(server)
        if "polling" in only:
            with run.measure("status polling", "polling"):
                run.results["polling"] = measure_polling(server, server_pids(server))
        if "weight" in only:
            with run.measure("page weight", "page_weight"):
                run.results["page_weight"] = measure_page_weight(server.port)
    finally:
        server.stop()


def _give_status_content(server) -> None:
    """A saved schedule and one finished backup, so the status shows every field it can."""
    status, body = server.request("POST", "/api/v1/settings/scheduler/backup", {"mode": "daily", "time": "03:00"})
    if status != 200:
        raise RuntimeError(f"saving a schedule answered {status}: {body}")
    status, body = server.request("POST", "/api/v1/settings/backup-db")
    if status != 200:
        raise RuntimeError(f"a manual backup answered {status}: {body}")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status, body = server.request("GET", "/api/v1/settings/scheduler")
        if status == 200 and not body["jobs"][0]["pending_apply"] and body["scheduler"]["running"]:
            return
        time.sleep(0.5)
    raise RuntimeError("the scheduler did not apply the schedule within 15 s")
