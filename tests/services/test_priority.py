"""Backups and restores run at low CPU and I/O priority in threads of their own, never in the caller's.

The priority is read from the kernel (``/proc/self/task/<tid>/stat`` and ``ioprio_get``)
inside the work itself; the calling thread stands for a pooled request or scheduler thread
and must keep its own priority, before, during (progress runs there) and after.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.services import backups, priority, restore
from app.services.backups import perform_sqlite_backup
from app.services.priority import IOPRIO_CLASS_IDLE, NICE, run_at_low_priority, thread_priority
from app.services.runner import run_task_now
from tests.services.test_backups import make_database
from tests.support.data import fill_items

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir() or thread_priority().io_class is None,
    reason="needs Linux with ioprio_get on this architecture",
)


def low(seen: priority.ThreadPriority) -> bool:
    return seen.nice == NICE and seen.io_class == IOPRIO_CLASS_IDLE


def spy(monkeypatch, module, name: str, seen: dict) -> None:
    """Wrap ``module.name`` so each call records the priority of the thread that made it."""
    original = getattr(module, name)

    def recording(*args, **kwargs):
        seen.setdefault(name, []).append(thread_priority())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)


def test_work_runs_lowered_in_its_own_thread_and_the_caller_keeps_its_priority():
    caller = thread_priority()

    def work(relay):
        return threading.get_native_id(), thread_priority()

    worker_id, seen = run_at_low_priority(work, name="test-low")

    assert worker_id != threading.get_native_id()
    assert low(seen), seen
    assert thread_priority() == caller


def test_progress_is_relayed_to_the_calling_thread_in_order():
    calls = []

    def work(relay):
        for percent in (0, 50, 100):
            relay("copying", percent)
        return "done"

    report = lambda phase, percent: calls.append((phase, percent, threading.get_native_id(), thread_priority()))  # noqa: E731
    assert run_at_low_priority(work, name="test-low", report=report) == "done"

    assert [(phase, percent) for phase, percent, _, _ in calls] == [("copying", 0), ("copying", 50), ("copying", 100)]
    assert {tid for _, _, tid, _ in calls} == {threading.get_native_id()}
    assert not any(low(seen) for *_, seen in calls)


def test_an_error_in_the_work_is_raised_in_the_caller():
    def work(relay):
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        run_at_low_priority(work, name="test-low")


def test_a_failing_report_stops_the_work_at_its_next_progress_call_and_waits_for_it():
    steps = []
    finished = threading.Event()

    def work(relay):
        try:
            for step in range(1000):
                relay(step)
                steps.append(step)
                threading.Event().wait(0.001)
        finally:
            finished.set()

    def report(step):
        if step == 3:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        run_at_low_priority(work, name="test-low", report=report)

    assert finished.is_set(), "the caller returned while the work was still running"
    assert len(steps) < 1000


def test_backup_copies_verifies_and_hashes_at_low_priority_and_leaves_the_pooled_thread_as_it_was(
    tmp_path, monkeypatch
):
    database = make_database(tmp_path / "source.db", rows=200)
    seen: dict = {}
    for name in ("_snapshot", "_verify", "_sha256", "fsync_path"):
        spy(monkeypatch, backups, name, seen)
    progress = []

    def report(phase, percent):
        progress.append((phase, thread_priority()))

    # One pooled thread, as a gthread worker's request thread or APScheduler's executor.
    with ThreadPoolExecutor(max_workers=1) as pool:
        before = pool.submit(thread_priority).result()
        pool.submit(perform_sqlite_backup, database, tmp_path / "backups", progress=report).result()
        after = pool.submit(thread_priority).result()

    assert {name: all(low(s) for s in calls) for name, calls in seen.items() if name != "fsync_path"} == {
        "_snapshot": True,
        "_verify": True,
        "_sha256": True,  # in a thread the backup thread started: the priority is inherited
    }
    assert low(seen["fsync_path"][0]), "the fsync of the copy runs at low priority too"
    assert {phase for phase, _ in progress} >= {"copying", "verifying", "finalizing"}
    assert not any(low(s) for _, s in progress), "progress is written at the caller's priority"
    assert after == before and not low(after)


def test_restore_checks_at_low_priority_and_copies_into_live_at_the_callers(make_app, monkeypatch):
    app = make_app()
    data = Path(app.config["DATABASE_PATH"])
    fill_items(data, 50, label="original")
    name = run_task_now(app.config, app.extensions["db"], "backup_db").result["file"]
    seen: dict = {}
    for function in ("sha256_of", "check_database", "quick_check", "copy_into_live"):
        spy(monkeypatch, restore, function, seen)
    spy(monkeypatch, backups, "_snapshot", seen)

    with ThreadPoolExecutor(max_workers=1) as pool:
        before = pool.submit(thread_priority).result()
        pool.submit(
            restore.restore_backup,
            data,
            Path(app.config["BACKUPS_DIR"]),
            app.extensions["db"],
            name,
            busy_timeout=5,
            report=lambda phase, percent: None,
        ).result()
        after = pool.submit(thread_priority).result()

    assert {function: [low(s) for s in calls] for function, calls in seen.items()} == {
        "sha256_of": [True],
        "check_database": [True],
        "_snapshot": [True],  # the safety backup
        # Holds the live database's write lock: the app's writers wait while it runs.
        "copy_into_live": [False],
        "quick_check": [True],
    }
    assert after == before and not low(after)
