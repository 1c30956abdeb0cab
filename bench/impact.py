"""2. Impact of a backup on the live app: write commits and HTTP latency, idle vs during a backup.

gunicorn (2 workers) serves the big database. A second process commits small write
transactions in a loop and a client thread requests two pages, all the time; in between
idle windows the app runs a backup of that database (the "Run backup now" API call, so it
runs where it runs in production: in a worker). Samples are sorted into idle and backup
windows by when they started.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

from bench.client import HTMX, fetch
from bench.servers import query, start_server, state_database_of
from bench.stats import latency_summary, paired_ratio, percentile, ratio

WRITE_INTERVAL = 0.02  # 50 commits/s
HTTP_INTERVAL = 0.05  # 20 requests/s, alternating the two pages
PAGES = (("/settings", {}), ("/settings/schedule/status", HTMX))
MIN_ROUNDS, MAX_ROUNDS = 5, 15  # five paired rounds at least: a median and a spread
QUICK_ROUNDS = 3
BACKUP_SECONDS_WANTED = 30.0  # rounds continue until backups covered this long, for enough samples
SETTLE_SECONDS = 2.0  # after a backup, not counted as idle (the deferred WAL checkpoint runs here)
WARMUP_SECONDS = 3.0
MIN_SAMPLES_PER_WINDOW = 20  # a round's p99 from fewer is one sample's luck (short backups of small databases)
BACKUP_TIMEOUT_SECONDS = 600


def measure_impact(database: Path, log, quick: bool = False) -> dict:
    """Latency of commits and pages with and without a backup running (``quick``: three rounds)."""
    server = start_server("impact", database=database)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    receiver, sender = context.Pipe(duplex=False)
    max_seconds = BACKUP_TIMEOUT_SECONDS * MAX_ROUNDS
    writer = context.Process(target=write_loop, args=(str(database), WRITE_INTERVAL, max_seconds, stop, sender))
    http_samples: list = []
    http_stop = threading.Event()
    client = threading.Thread(target=_http_loop, args=(server.port, http_stop, http_samples, max_seconds), daemon=True)
    windows: dict[str, list[tuple[float, float]]] = {"idle": [], "backup": [], "after": []}
    backups: list[dict] = []
    try:
        writer.start()
        client.start()
        time.sleep(WARMUP_SECONDS)
        covered = 0.0
        for round_number in range(MAX_ROUNDS):
            idle = min(max(backups[-1]["seconds"] if backups else 5.0, 2.0), 8.0)
            windows["idle"].append((time.monotonic(), time.monotonic() + idle))
            time.sleep(idle)
            backup = _run_backup(server, state_database_of(server))
            backups.append(backup)
            windows["backup"].append((backup["started"], backup["finished"]))
            windows["after"].append((backup["finished"], backup["finished"] + SETTLE_SECONDS))
            covered += backup["seconds"]
            log(f"  backup {round_number + 1}: {backup['seconds']:.2f} s ({backup['status']})")
            time.sleep(SETTLE_SECONDS)
            if round_number + 1 >= (QUICK_ROUNDS if quick else MIN_ROUNDS) and (
                quick or covered >= BACKUP_SECONDS_WANTED
            ):
                break
        windows["idle"].append((time.monotonic(), time.monotonic() + 5.0))
        time.sleep(5.0)
    finally:
        stop.set()
        http_stop.set()
        client.join(timeout=60)
        writes = receiver.recv() if receiver.poll(60) else {"samples": [], "setup_error": "writer sent nothing"}
        writer.join(timeout=30)
        if writer.is_alive():
            writer.terminate()
        server.stop()
        _clean_up(database)
    return _summarize(writes, http_samples, windows, backups)


def write_loop(
    database: str, interval: float, max_seconds: float, stop, results, busy_timeout: float = 10, journal: str = "WAL"
) -> None:
    """The second process: small write transactions, each timed, until told to stop."""
    connection = sqlite3.connect(database, timeout=busy_timeout, isolation_level=None)
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    connection.execute(f"PRAGMA journal_mode = {journal}")
    connection.execute("PRAGMA synchronous = NORMAL")  # as the app's connections
    connection.execute("CREATE TABLE IF NOT EXISTS bench_writes (id INTEGER PRIMARY KEY, at REAL, note TEXT)")
    samples = []
    deadline = time.monotonic() + max_seconds
    next_at = time.monotonic()
    for number in range(int(max_seconds / interval) + 1):
        if stop.is_set() or time.monotonic() > deadline:
            break
        started = time.monotonic()
        error = None
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO bench_writes (at, note) VALUES (?, ?)", (time.time(), f"write {number}"))
            connection.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            error = str(exc)
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        samples.append((started, time.monotonic() - started, error))
        next_at = max(next_at + interval, time.monotonic())
        time.sleep(max(0.0, next_at - time.monotonic()))
    connection.close()
    results.send({"samples": samples})


def _http_loop(port: int, stop: threading.Event, samples: list, max_seconds: float) -> None:
    deadline = time.monotonic() + max_seconds
    next_at = time.monotonic()
    for number in range(int(max_seconds / HTTP_INTERVAL) + 1):
        if stop.is_set() or time.monotonic() > deadline:
            break
        path, headers = PAGES[number % len(PAGES)]
        samples.append(fetch(port, path, headers))
        next_at = max(next_at + HTTP_INTERVAL, time.monotonic())
        time.sleep(max(0.0, next_at - time.monotonic()))


def _run_backup(server, state_database: Path) -> dict:
    """Start a backup through the API and wait (bounded) until its run is finished."""
    started = time.monotonic()
    status, body = server.request("POST", "/api/v1/settings/scheduler/backup/run")
    if status != 202:
        raise RuntimeError(f"starting a backup answered {status}: {body}")
    run_id = body["run"]["id"] if "run" in body else body["id"]
    deadline = started + BACKUP_TIMEOUT_SECONDS
    phases: dict[str, float] = {}  # when each phase was first seen, seconds into the backup
    while time.monotonic() < deadline:
        rows = query(state_database, "SELECT status, file, error, phase FROM job_run WHERE id = ?", run_id)
        if rows and rows[0][0] != "running":
            break
        if rows and rows[0][3] and rows[0][3] not in phases:
            phases[rows[0][3]] = round(time.monotonic() - started, 2)
        time.sleep(0.05)
    else:
        raise RuntimeError(f"backup run {run_id} did not finish within {BACKUP_TIMEOUT_SECONDS} s")
    finished = time.monotonic()
    run_status, file, error, _ = rows[0]
    if file:
        (Path(server.env["BACKUPS_DIR"]) / file).unlink(missing_ok=True)
    return {
        "started": started,
        "finished": finished,
        "seconds": finished - started,
        "status": run_status,
        "error": error,
        "phases_seen_at": phases,
    }


def _clean_up(database: Path) -> None:
    """Drop the writer's rows and fold the WAL back, so the cached database stays as it was."""
    connection = sqlite3.connect(database, timeout=10, isolation_level=None)
    try:
        connection.execute("DROP TABLE IF EXISTS bench_writes")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def _in(windows: list[tuple[float, float]], moment: float) -> bool:
    return any(start <= moment <= end for start, end in windows)


def _summarize(writes: dict, http_samples: list, windows: dict, backups: list[dict]) -> dict:
    write_samples = writes.get("samples", [])
    result: dict = {
        "backups": [
            {
                "seconds": round(b["seconds"], 2),
                "status": b["status"],
                "error": b["error"],
                "phases": b["phases_seen_at"],
            }
            for b in backups
        ],
        "lock_errors": sum(1 for _, _, error in write_samples if error and "locked" in error),
        "write_errors": sorted({error for _, _, error in write_samples if error}),
        "http_errors": sorted({a.error for a in http_samples if a.error}),
        "http_error_count": sum(1 for a in http_samples if a.error),
    }
    if writes.get("setup_error"):
        result["write_errors"].append(writes["setup_error"])
    for name, spans in windows.items():
        result[f"write_{name}"] = latency_summary([s for t, s, error in write_samples if not error and _in(spans, t)])
        result[f"http_{name}"] = latency_summary([a.seconds for a in http_samples if a.ok and _in(spans, a.started)])
        for path, _ in PAGES:
            result[f"http_{name}"][path] = latency_summary(
                [a.seconds for a in http_samples if a.ok and a.path == path and _in(spans, a.started)]
            )
    result["slowest_http_during_backup"] = _slowest(http_samples, windows["backup"])
    # Pooled over all rounds (as before issue 15), for reference; the targets use the paired rounds.
    result["http_p99_ratio_pooled"] = ratio(result["http_backup"]["p99_ms"], result["http_idle"]["p99_ms"])
    result["write_p99_ratio_pooled"] = ratio(result["write_backup"]["p99_ms"], result["write_idle"]["p99_ms"])
    rounds = list(zip(windows["idle"], windows["backup"], strict=False))  # each backup with the idle window before it
    http = [(a.started, a.seconds) for a in http_samples if a.ok]
    writes_ok = [(t, seconds) for t, seconds, error in write_samples if not error]
    for kind, samples in (("http", http), ("write", writes_ok)):
        idle_p99 = [_p99([v for t, v in samples if _in([idle], t)]) for idle, _ in rounds]
        busy_p99 = [_p99([v for t, v in samples if _in([busy], t)]) for _, busy in rounds]
        pairs = [(busy, idle) for busy, idle in zip(busy_p99, idle_p99, strict=True) if busy and idle]
        result[f"{kind}_p99_ratio"] = paired_ratio([busy for busy, _ in pairs], [idle for _, idle in pairs])
        result[f"{kind}_p99_ms_by_round"] = [
            [_ms(idle), _ms(busy)] for busy, idle in zip(busy_p99, idle_p99, strict=True)
        ]
    return result


def _p99(seconds: list[float]) -> float | None:
    """A window's p99, or None (the round does not count) when it holds too few samples to have one."""
    return percentile(seconds, 99) if len(seconds) >= MIN_SAMPLES_PER_WINDOW else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _slowest(http_samples: list, spans: list[tuple[float, float]], count: int = 8) -> list[dict]:
    """The slowest requests during backups, with when they started into their backup (diagnosis)."""
    found = []
    for answer in http_samples:
        for start, end in spans:
            if answer.ok and start <= answer.started <= end:
                found.append(
                    {
                        "path": answer.path,
                        "ms": round(answer.seconds * 1000, 1),
                        "at_s": round(answer.started - start, 2),
                    }
                )
    return sorted(found, key=lambda item: item["ms"], reverse=True)[:count]
