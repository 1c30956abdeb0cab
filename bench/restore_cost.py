"""Restore cost: the copy into the live database and the whole restore, against ``cp`` + fsync.

The live database is a WAL copy of the dataset, and the backup restored is a verified
backup of it, as in production. Paired rounds: the copy phase and the whole restore each
run beside a cp + fsync of the backup file (cp first in every other pair), so both sides
see the same page cache and load; each ratio is the median of the per-pair ratios, with
their spread. A writer in another process commits every
10 ms during one more restore (busy timeout above the copy time): it must see no
"database is locked", and its longest stall is compared with the copy phase. The same
writer during a backup of a rollback-journal database shows what that mode costs
writers (there a reader blocks commits for the whole snapshot).
"""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import time
from pathlib import Path

from app.db import Database
from app.services.backups import backup_lock, perform_sqlite_backup
from app.services.restore import copy_into_live, restore_backup
from bench.backup_cost import _cp_and_fsync
from bench.impact import write_loop
from bench.servers import run_dir
from bench.stats import median, paired_ratio

WRITE_INTERVAL = 0.010
WRITER_BUSY_TIMEOUT_SECONDS = 120  # above any copy time here: the writer waits, it must not fail


def measure_restore_cost(database: Path, repeats: int, log) -> dict:
    """Median seconds of cp+fsync, the copy phase and the whole restore; the writer's view."""
    folder = run_dir("restore-cost")
    live = folder / "live.sqlite3"
    _wal_copy(database, live)
    state = Database(f"sqlite:///{folder / 'state.db'}", folder / "state.db")
    state.create_tables()
    backups = folder / "backups"
    backup = perform_sqlite_backup(live, backups, kind="manual").path
    times: dict[str, list[float]] = {"copy": [], "restore": []}
    baselines: dict[str, list[float]] = {"copy": [], "restore": []}
    phases: list[dict[str, float]] = []

    def copy() -> float:
        return _timed(lambda: copy_into_live(backup, live, 60, lambda percent: None))

    def whole() -> float:
        seconds, phase_times = _whole_restore(live, backups, state, backup.name)
        phases.append(phase_times)
        _drop_safety_backups(backups)
        return seconds

    try:
        for round_number in range(repeats):
            # Paired rounds: each subject beside its own cp + fsync, cp first in every other pair.
            for pair_number, (name, subject) in enumerate((("copy", copy), ("restore", whole))):
                cp_first = (round_number + pair_number) % 2 == 0
                if cp_first:
                    baselines[name].append(_cp_and_fsync(backup, folder / "cp-copy.sqlite3"))
                times[name].append(subject())
                if not cp_first:
                    baselines[name].append(_cp_and_fsync(backup, folder / "cp-copy.sqlite3"))
            log(
                f"  round {round_number + 1}/{repeats}: "
                + ", ".join(f"{k} {v[-1]:.2f} s / cp {baselines[k][-1]:.2f} s" for k, v in times.items())
            )
        writer_wal = _writer_during(live, lambda: copy_into_live(backup, live, 60, lambda percent: None))
        log(f"  writer during a restore copy: longest stall {writer_wal['longest_stall_ms']} ms")
        rollback = folder / "rollback.sqlite3"
        _wal_copy(database, rollback, journal="DELETE")
        writer_rollback = _writer_during(rollback, lambda: _backup_of(rollback, backups), journal="DELETE")
        log(f"  writer during a backup of a rollback-journal database: {writer_rollback['longest_stall_ms']} ms")
    finally:
        state.dispose()
        shutil.rmtree(folder, ignore_errors=True)
    seconds = {"cp": baselines["copy"] + baselines["restore"], **times}
    return {
        "source_bytes": database.stat().st_size,
        "repeats": repeats,
        "seconds": {name: [round(value, 3) for value in values] for name, values in seconds.items()},
        "median_seconds": {name: round(median(values), 3) for name, values in seconds.items()},
        "restore_phase_median_seconds": {
            name: round(median([p.get(name, 0.0) for p in phases]), 3) for name in phases[0]
        },
        "copy_ratio": paired_ratio(times["copy"], baselines["copy"]),
        "restore_ratio": paired_ratio(times["restore"], baselines["restore"]),
        "writer_during_restore": writer_wal,
        "writer_during_rollback_journal_backup": writer_rollback,
    }


def _timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def _wal_copy(source: Path, target: Path, journal: str = "WAL") -> None:
    """A copy of the dataset in the given journal mode (the app's data database is WAL)."""
    shutil.copyfile(source, target)
    conn = sqlite3.connect(target)
    conn.execute(f"PRAGMA journal_mode = {journal}")
    conn.close()


def _whole_restore(live: Path, backups: Path, state: Database, name: str) -> tuple[float, dict[str, float]]:
    marks: list[tuple[str, float]] = []

    def report(phase: str, _percent: int | None) -> None:
        if not marks or marks[-1][0] != phase:
            marks.append((phase, time.monotonic()))

    with backup_lock(live) as lock:
        if not lock.try_acquire():
            raise RuntimeError(f"another backup of {live} is running")
        started = time.monotonic()
        restore_backup(live, backups, state, name, busy_timeout=60, report=report)
        seconds = time.monotonic() - started
    ends = [at for _, at in marks[1:]] + [started + seconds]
    return seconds, {phase: round(end - at, 3) for (phase, at), end in zip(marks, ends, strict=True)}


def _drop_safety_backups(backups: Path) -> None:
    for path in backups.glob("*-pre-restore.sqlite3"):
        path.unlink()


def _backup_of(database: Path, backups: Path) -> None:
    perform_sqlite_backup(database, backups, kind="manual").path.unlink()


def _writer_during(database: Path, action, journal: str = "WAL") -> dict:
    """Commit every 10 ms in another process while ``action`` runs; summarise what the writer saw."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    receiver, sender = context.Pipe(duplex=False)
    writer = context.Process(
        target=write_loop, args=(str(database), WRITE_INTERVAL, 600, stop, sender, WRITER_BUSY_TIMEOUT_SECONDS, journal)
    )
    writer.start()
    time.sleep(1.0)
    started = time.monotonic()
    action()
    action_seconds = time.monotonic() - started
    time.sleep(1.0)
    stop.set()
    samples = receiver.recv()["samples"] if receiver.poll(120) else []
    writer.join(timeout=30)
    stalls = [seconds for _at, seconds, _error in samples]
    errors = [error for _at, _seconds, error in samples if error]
    return {
        "action_seconds": round(action_seconds, 3),
        "commits": len(samples),
        "lock_errors": sum("locked" in error for error in errors),
        "errors": len(errors),
        "longest_stall_ms": round(max(stalls) * 1000, 1) if stalls else None,
    }
