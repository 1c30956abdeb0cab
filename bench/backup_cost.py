"""1. Backup cost: perform_sqlite_backup() and a bare backup-API copy, against ``cp`` + fsync.

Each method runs beside a ``cp`` + fsync of the same file (paired rounds: cp first in
every other pair, the methods in a rotating order), and each ratio is the median of the
per-pair ratios, with their spread: a busy moment slows both sides of a pair alike. All
use the same source file and folder, so they share the page-cache state; nothing is
dropped from the cache.

The bare copy is measured twice: with SQLite's defaults (the target keeps a rollback
journal and syncs at commit; this one carries the target), and with the target settings
perform_sqlite_backup() uses (no journal, no syncs), for comparison. Both are fsynced at the
end, as cp is, so every method leaves the same durable file. perform_sqlite_backup() runs
at the low priority it has since issue 15 (the target), and once more per round at normal
priority, to show what yielding to everything else costs on this machine.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from app.services import priority
from app.services.backups import backup_lock, perform_sqlite_backup
from bench.servers import run_dir
from bench.stats import median, paired_ratio
from bench.system import fsync_path, page_cache_fraction

METHODS = ("cp", "copy", "copy_unjournaled", "backup", "backup_normal_priority")


def measure_backup_cost(database: Path, repeats: int, log) -> dict:
    """Each method paired with a cp + fsync run beside it, ``repeats`` rounds; per-pair ratios."""
    folder = run_dir("backup-cost")
    cached_before = page_cache_fraction(database)
    subjects = METHODS[1:]
    times: dict[str, list[float]] = {method: [] for method in subjects}
    baselines: dict[str, list[float]] = {method: [] for method in subjects}
    phases: list[dict[str, float]] = []
    for round_number in range(repeats):
        shift = round_number % len(subjects)
        for pair_number, method in enumerate(subjects[shift:] + subjects[:shift]):
            # cp first in every other pair, so neither side always follows the other's page-cache churn.
            cp_first = (round_number + pair_number) % 2 == 0
            if cp_first:
                baselines[method].append(_cp_and_fsync(database, folder / "cp-copy.sqlite3"))
            if method == "backup":
                seconds, phase_times = _perform_backup(database, folder / "backups")
                phases.append(phase_times)
            elif method == "backup_normal_priority":
                with _priority_left_alone():
                    seconds, _ = _perform_backup(database, folder / "backups")
            else:
                seconds = _backup_api_copy(database, folder / "api-copy.sqlite3", method == "copy_unjournaled")
            times[method].append(seconds)
            if not cp_first:
                baselines[method].append(_cp_and_fsync(database, folder / "cp-copy.sqlite3"))
        log(
            f"  round {round_number + 1}/{repeats}: "
            + ", ".join(f"{m} {times[m][-1]:.2f} s / cp {baselines[m][-1]:.2f} s" for m in subjects)
        )
    cached_after = page_cache_fraction(database)
    shutil.rmtree(folder, ignore_errors=True)
    all_cp = [seconds for values in baselines.values() for seconds in values]
    seconds = {"cp": all_cp, **times}
    phase_medians = {name: round(median([p.get(name, 0.0) for p in phases]), 3) for name in phases[0]}
    return {
        "source_bytes": database.stat().st_size,
        "repeats": repeats,
        "page_cache": {"before": cached_before, "after": cached_after},
        "seconds": {method: [round(value, 3) for value in values] for method, values in seconds.items()},
        "cp_seconds_paired": {method: [round(value, 3) for value in values] for method, values in baselines.items()},
        "median_seconds": {method: round(median(values), 3) for method, values in seconds.items()},
        "backup_phase_median_seconds": phase_medians,
        "copy_ratio": paired_ratio(times["copy"], baselines["copy"]),
        "copy_unjournaled_ratio": paired_ratio(times["copy_unjournaled"], baselines["copy_unjournaled"]),
        "backup_ratio": paired_ratio(times["backup"], baselines["backup"]),
        "backup_normal_priority_ratio": paired_ratio(
            times["backup_normal_priority"], baselines["backup_normal_priority"]
        ),
    }


@contextmanager
def _priority_left_alone():
    """perform_sqlite_backup() as before issue 15: its threads keep normal priority (comparison only)."""
    lower = priority.lower_current_thread
    priority.lower_current_thread = lambda: None
    try:
        yield
    finally:
        priority.lower_current_thread = lower


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


class _ThreadTimes(logging.Handler):
    """Keeps what run_at_low_priority() logs of its thread: seconds on a CPU and waiting for one."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.args and record.args[0] == "backup":
            self.seen.append((record.args[1], record.args[2]))


def _perform_backup(source: Path, backups_dir: Path) -> tuple[float, dict[str, float]]:
    """The app's full backup (copy, verification, fsync, rename), with time per phase.

    Also the backup thread's time on a CPU and in the run queue (the copy and quick_check;
    the hash and fsync run in threads of their own), which says how much it yielded.
    """
    marks: list[tuple[str, float]] = []
    times = _ThreadTimes()
    logger = logging.getLogger(priority.__name__)
    logger.addHandler(times)
    level = logger.level
    logger.setLevel(logging.INFO)

    def progress(phase: str, _percent: int | None) -> None:
        if not marks or marks[-1][0] != phase:
            marks.append((phase, time.monotonic()))

    try:
        with backup_lock(source) as lock:
            if not lock.try_acquire():
                raise RuntimeError(f"another backup of {source} is running")
            started = time.monotonic()
            result = perform_sqlite_backup(source, backups_dir, kind="manual", progress=progress)
            seconds = time.monotonic() - started
    finally:
        logger.removeHandler(times)
        logger.setLevel(level)
    result.path.unlink()
    ends = [at for _, at in marks[1:]] + [started + seconds]
    phase_times = {phase: round(end - at, 3) for (phase, at), end in zip(marks, ends, strict=True)}
    if times.seen:
        phase_times["thread on a CPU"], phase_times["thread waiting for a CPU"] = (round(t, 3) for t in times.seen[-1])
    return seconds, phase_times
