"""7. Several hosts (issue 17), when PostgreSQL is installed: fire delay across three hosts, pg_dump's cost.

- **Fire delay**: three gunicorn instances (own folders) on one PostgreSQL state database,
  a ``* * * * *`` cron, the delay ``started_at - scheduled_for`` of each fire, and how many
  runs each fire time got (must be one). It waits for real minutes, so it runs in the
  background like the SQLite scheduler measurement.
- **pg_dump cost**: paired rounds of a bare ``pg_dump -Fc`` to a file and the app's whole
  backup (the same dump, then ``pg_restore --list`` and a full ``pg_restore -f /dev/null``,
  fsync, sha256, rename) of one database of ``--size-mb``.
"""

from __future__ import annotations

import subprocess
import threading
import time

from bench.servers import NO_AUTH, run_dir
from bench.stats import median
from tests.support.postgres import PostgresCluster, postgres_bin, start_cluster
from tests.support.server import GunicornServer

POLL_SECONDS = 1.0
ROW_BYTES = 260  # payload per row of the generated table, roughly


def postgres_available() -> bool:
    """Whether PostgreSQL's server binaries are installed (the measurements are skipped otherwise)."""
    try:
        postgres_bin()
    except RuntimeError:
        return False
    return True


class PgSchedulerTrack(threading.Thread):
    """Runs the three-host fire-delay measurement in the background; ``result`` holds it when done."""

    def __init__(self, fires: int, log) -> None:
        super().__init__(name="bench-pg-scheduler", daemon=True)
        self.fires = fires
        self.log = log
        self.result: dict = {}

    def run(self) -> None:
        try:
            self.result = self._measure()
        except Exception as exc:  # reported in the results, not lost in a thread
            self.result = {"error": f"{type(exc).__name__}: {exc}"}

    def _measure(self) -> dict:
        cluster = start_cluster()
        servers: list[GunicornServer] = []
        try:
            url = cluster.url(cluster.new_database())
            for index in range(3):
                instance = run_dir(f"pg-host{index}")
                env = {**NO_AUTH, "STATE_DATABASE_URL": url, "BACKUPS_DIR": str(instance / "backups")}
                servers.append(GunicornServer(instance, workers=2, **env).start(timeout=60))
            status, body = servers[0].request(
                "POST", "/api/v1/settings/scheduler/backup", {"mode": "cron", "cron": "* * * * *"}
            )
            if status != 200:
                raise RuntimeError(f"saving the cron schedule answered {status}: {body}")
            rows = self._wait_for_fires(servers[0])
            return _summary(rows, self.fires, self.log)
        finally:
            for server in servers:
                server.stop()
            cluster.stop()

    def _wait_for_fires(self, server: GunicornServer) -> list[tuple]:
        deadline = time.monotonic() + 60 * (self.fires + 1) + 30
        rows: list[tuple] = []
        while time.monotonic() < deadline:
            rows = server.query(
                "SELECT scheduled_for, started_at, status FROM job_run "
                "WHERE scheduled_for IS NOT NULL AND status != 'running' ORDER BY scheduled_for"
            )
            if len({row[0] for row in rows}) >= self.fires:
                break
            time.sleep(POLL_SECONDS)
        return rows


def _summary(rows: list[tuple], fires: int, log) -> dict:
    per_fire: dict = {}
    for scheduled_for, started_at, status in rows:
        per_fire.setdefault(scheduled_for, []).append((started_at, status))
    delays = []
    for scheduled_for, runs in sorted(per_fire.items())[:fires]:
        delay = (runs[0][0] - scheduled_for).total_seconds() * 1000
        delays.append(round(delay, 1))
        log(f"  pg scheduler: fire at {scheduled_for:%H:%M} started {delay:.0f} ms late, {len(runs)} run(s)")
    return {
        "fires_wanted": fires,
        "delays_ms": delays,
        "delay_median_ms": median(delays),
        "runs_per_fire": [len(runs) for _, runs in sorted(per_fire.items())[:fires]],
    }


def measure_pg_dump_cost(size_mb: int, repeats: int, log) -> dict:
    """Paired rounds: bare pg_dump -Fc, then the app's whole verified backup, of one database."""
    from app.services.pg_backups import find_tool, perform_pg_backup

    cluster = start_cluster()
    try:
        name = cluster.new_database()
        built = _fill(cluster, name, size_mb, log)
        url = cluster.url(name)
        folder = run_dir("pg-dump")
        bare_ms, backup_ms, ratios = [], [], []
        pg_dump = find_tool("pg_dump")
        for round_number in range(repeats):
            started = time.monotonic()
            target = folder / "bare.dump"
            subprocess.run(
                [pg_dump, "--format=custom", "--file", str(target), "--dbname", url.replace("+psycopg", "")],
                check=True,
            )
            bare = time.monotonic() - started
            dump_bytes = target.stat().st_size
            target.unlink()
            started = time.monotonic()
            result = perform_pg_backup(url, folder / "backups", kind="manual")
            whole = time.monotonic() - started
            result.path.unlink()
            bare_ms.append(round(bare * 1000))
            backup_ms.append(round(whole * 1000))
            ratios.append(round(whole / bare, 3))
            log(f"  pg_dump round {round_number + 1}/{repeats}: bare {bare:.2f} s, with checks {whole:.2f} s")
        return {
            "database_bytes": built,
            "dump_bytes": dump_bytes,
            "bare_ms": bare_ms,
            "backup_ms": backup_ms,
            "ratio": {"median": median(ratios), "min": min(ratios), "max": max(ratios)},
        }
    finally:
        cluster.stop()


def _fill(cluster: PostgresCluster, name: str, size_mb: int, log) -> int:
    """A table of about ``size_mb`` MiB of random hex (compresses about as much as real text)."""
    rows = size_mb * 2**20 // ROW_BYTES
    started = time.monotonic()
    cluster.psql(
        "CREATE TABLE item (id bigint PRIMARY KEY, payload text);"
        "INSERT INTO item SELECT i, md5(random()::text) || md5(random()::text) || md5(random()::text) "
        "|| md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) "
        f"FROM generate_series(1, {rows}) AS i;",
        database=name,
    )
    size = int(cluster.psql(f"SELECT pg_database_size('{name}')", database=name))
    log(f"  pg_dump: built a {size / 2**20:.0f} MiB database in {time.monotonic() - started:.0f} s")
    return size


def render(results: dict) -> list[str]:
    """The report's lines for both measurements (either may be missing)."""
    lines = ["7. Several hosts (PostgreSQL)"]
    fires = results.get("pg_scheduler")
    if fires and "error" not in fires:
        lines.append(
            f"   fire delay across 3 hosts: median {fires['delay_median_ms']} ms ({fires['delays_ms']} ms); "
            f"runs per fire time {fires['runs_per_fire']}"
        )
    elif fires:
        lines.append(f"   fire delay FAILED: {fires['error']}")
    cost = results.get("pg_dump_cost")
    if cost and "error" not in cost:
        lines.append(
            f"   pg_dump -Fc of {cost['database_bytes'] / 2**20:.0f} MiB ({cost['dump_bytes'] / 2**20:.0f} MiB dump): "
            f"bare {cost['bare_ms']} ms, with checks {cost['backup_ms']} ms, ratio {cost['ratio']['median']}"
        )
    elif cost:
        lines.append(f"   pg_dump cost FAILED: {cost['error']}")
    return lines
