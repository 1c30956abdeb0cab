"""1. Backup cost: perform_sqlite_backup() and a bare backup-API copy, against ``cp`` + fsync.

All are run alternately, in a rotating order, on the same source file and into the same
folder, so they share the page-cache state; nothing is dropped from the cache.

The bare copy is measured twice: with SQLite's defaults (the target keeps a rollback
journal and syncs at commit; this one carries the target), and with the target settings
perform_sqlite_backup() uses (no journal, no syncs), for comparison. Both are fsynced at the
end, as cp is, so every method leaves the same durable file.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from app.services.backups import backup_lock, perform_sqlite_backup
from bench.servers import run_dir
from bench.stats import median, ratio
from bench.system import fsync_path, page_cache_fraction

METHODS = ("cp", "copy", "copy_unjournaled", "backup")


def measure_backup_cost(database: Path, repeats: int, log) -> dict:
    """Median seconds of each method over ``repeats`` rounds, and the ratios against cp."""
    folder = run_dir("backup-cost")
    cached_before = page_cache_fraction(database)
    times: dict[str, list[float]] = {method: [] for method in METHODS}
    phases: list[dict[str, float]] = []
    for round_number in range(repeats):
        shift = round_number % len(METHODS)
        for method in METHODS[shift:] + METHODS[:shift]:
            if method == "cp":
                times["cp"].append(_cp_and_fsync(database, folder / "cp-copy.sqlite3"))
            elif method.startswith("copy"):
                unjournaled = method == "copy_unjournaled"
                times[method].append(_backup_api_copy(database, folder / "api-copy.sqlite3", unjournaled))
            else:
                seconds, phase_times = _perform_backup(database, folder / "backups")
                times["backup"].append(seconds)
                phases.append(phase_times)
        log(f"  round {round_number + 1}/{repeats}: " + ", ".join(f"{m} {times[m][-1]:.2f} s" for m in METHODS))
    cached_after = page_cache_fraction(database)
    shutil.rmtree(folder, ignore_errors=True)
    medians = {method: median(values) for method, values in times.items()}
    phase_medians = {name: round(median([p.get(name, 0.0) for p in phases]), 3) for name in phases[0]}
    return {
        "source_bytes": database.stat().st_size,
        "repeats": repeats,
        "page_cache": {"before": cached_before, "after": cached_after},
        "seconds": {method: [round(value, 3) for value in values] for method, values in times.items()},
        "median_seconds": {method: round(value, 3) for method, value in medians.items()},
        "backup_phase_median_seconds": phase_medians,
        "copy_ratio": ratio(medians["copy"], medians["cp"]),
        "copy_unjournaled_ratio": ratio(medians["copy_unjournaled"], medians["cp"]),
        "backup_ratio": ratio(medians["backup"], medians["cp"]),
    }


def _cp_and_fsync(source: Path, target: Path) -> float:
    started = time.monotonic()
    subprocess.run(["cp", str(source), str(target)], check=True)
    fsync_path(target)
    seconds = time.monotonic() - started
    target.unlink()
    return seconds


def _backup_api_copy(source: Path, target: Path, unjournaled: bool = False) -> float:
    """SQLite's backup API in one step into a new file, then fsync (as cp gets): no checks."""
    started = time.monotonic()
    source_connection = sqlite3.connect(source)
    target_connection = sqlite3.connect(target)
    if unjournaled:
        target_connection.execute("PRAGMA journal_mode = OFF")
        target_connection.execute("PRAGMA synchronous = OFF")
    try:
        source_connection.backup(target_connection, pages=-1)
    finally:
        target_connection.close()
        source_connection.close()
    fsync_path(target)
    seconds = time.monotonic() - started
    target.unlink()
    for side in ("-journal", "-wal", "-shm"):
        Path(f"{target}{side}").unlink(missing_ok=True)
    return seconds


def _perform_backup(source: Path, backups_dir: Path) -> tuple[float, dict[str, float]]:
    """The app's full backup (copy, verification, fsync, rename), with time per phase."""
    marks: list[tuple[str, float]] = []

    def progress(phase: str, _percent: int | None) -> None:
        if not marks or marks[-1][0] != phase:
            marks.append((phase, time.monotonic()))

    with backup_lock(source) as lock:
        if not lock.try_acquire():
            raise RuntimeError(f"another backup of {source} is running")
        started = time.monotonic()
        result = perform_sqlite_backup(source, backups_dir, kind="manual", progress=progress)
        seconds = time.monotonic() - started
    result.path.unlink()
    ends = [at for _, at in marks[1:]] + [started + seconds]
    phase_times = {phase: round(end - at, 3) for (phase, at), end in zip(marks, ends, strict=True)}
    return seconds, phase_times
