"""Notifications: how soon a failed run's message reaches a webhook, and what a hanging receiver costs a run.

The app runs under gunicorn (2 workers) with a backups folder whose parent is a file, so
runs fail for real; between samples a successful run ("recovered") resets the state, as
only a change of state is told.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

from bench.servers import RUNS_DIR, parse_utc, query, start_server, state_database_of
from tests.support.receivers import HttpReceiver

SAMPLES = 5
TIMEOUT_SECONDS = 5


def _wait(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.01)
    raise RuntimeError(f"no webhook message within {timeout} s")


def _configure(server, urls: list[str], events: list[str]) -> None:
    code, body = server.request(
        "PUT", "/api/v1/settings/notifications", {"urls": urls, "events": events, "ping_url": None}
    )
    if code != 200:
        raise RuntimeError(f"saving notification settings answered {code}: {body}")


def _backup(server) -> tuple[int, dict, float]:
    started = time.monotonic()
    code, body = server.request("POST", "/api/v1/settings/backup-db")
    return code, body, time.monotonic() - started


def measure_notify(log) -> dict:
    """Failed run's end to webhook receipt (median of 5); a manual backup with and without a hanging receiver."""
    blocker = RUNS_DIR / "notify" / "blocker"
    server = start_server("notify", BACKUPS_DIR=str(blocker / "backups"), NOTIFY_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS))
    try:
        latencies = _failure_latencies(server, blocker, log)
        cost = _hanging_cost(server, log)
    finally:
        server.stop()
    return {
        "samples": SAMPLES,
        "failure_to_receipt_ms": [round(value * 1000, 1) for value in latencies],
        "failure_to_receipt_median_ms": round(statistics.median(latencies) * 1000, 1),
        **cost,
    }


def _failure_latencies(server, blocker: Path, log) -> list[float]:
    with HttpReceiver() as webhook:
        _configure(server, [f"json://127.0.0.1:{webhook.port}/hook"], ["run_failed", "recovered"])
        latencies = []
        for sample in range(SAMPLES):
            # Point the server's backups at <blocker>/backups: failing while blocker is a file.
            shutil.rmtree(blocker, ignore_errors=True)
            blocker.write_text("not a folder\n")
            seen = len(webhook.posts())
            code, body, _ = _backup(server)
            if code < 400:
                raise RuntimeError(f"the backup was meant to fail, answered {code}: {body}")
            run_id = body["run"]["id"]
            post = _wait(lambda seen=seen: webhook.posts()[seen:], 10)[0]
            finished = parse_utc(
                query(state_database_of(server), "SELECT finished_at FROM job_run WHERE id = ?", run_id)[0][0]
            )
            latencies.append(post.received_at - finished.timestamp())
            log(f"notify: sample {sample + 1}: failed run's end to webhook receipt {latencies[-1] * 1000:.0f} ms")
            blocker.unlink()
            code, body, _ = _backup(server)  # recovered: the next failure is a change of state again
            if code != 200:
                raise RuntimeError(f"the repaired backup answered {code}: {body}")
            _wait(lambda seen=seen: len(webhook.posts()) >= seen + 2, 10)
    return latencies


def _hanging_cost(server, log) -> dict:
    shutil.rmtree(server.instance / "blocker", ignore_errors=True)
    (server.instance / "blocker" / "backups").mkdir(parents=True)
    _configure(server, [], ["success"])
    base = [_backup(server)[2] for _ in range(SAMPLES)]
    with HttpReceiver(hang=True) as hanging:
        _configure(server, [f"json://127.0.0.1:{hanging.port}/hook"], ["success"])
        hung = [_backup(server)[2] for _ in range(SAMPLES)]
        _wait(lambda: len(hanging.posts()) >= SAMPLES, 10)
    added = statistics.median(hung) - statistics.median(base)
    log(
        f"notify: manual backup {statistics.median(base) * 1000:.0f} ms, with a hanging receiver "
        f"{statistics.median(hung) * 1000:.0f} ms"
    )
    return {
        "backup_ms_median": round(statistics.median(base) * 1000, 1),
        "backup_with_hanging_receiver_ms_median": round(statistics.median(hung) * 1000, 1),
        "hanging_receiver_added_ms": round(added * 1000, 1),
        "hanging_receiver_added_ms_max": round((max(hung) - statistics.median(base)) * 1000, 1),
    }
