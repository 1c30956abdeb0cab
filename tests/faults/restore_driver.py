"""Run one restore as the app does (``restore_now``) in a process of its own, to be killed.

    python -m tests.faults.restore_driver INSTANCE FILE [--stop-at POINT] [--file-size-limit BYTES]

``--stop-at`` freezes the process (SIGSTOP) at a chosen moment so a test can SIGKILL it
there: "checking", "safety backup" or "verifying" (just after the run recorded that
phase), or "mid-copy" (inside the copy into the live database, its write transaction
open and part of the pages written). It prints the run's outcome as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal

from app import create_app
from app.services import restore, runs
from app.services.backup_tasks import restore_now

PHASES = ("checking", "safety backup", "verifying")
STOP_POINTS = (*PHASES, "mid-copy")


def main(argv: list[str] | None = None) -> None:
    """Create the app on INSTANCE, restore FILE, print the outcome."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("instance")
    parser.add_argument("file")
    parser.add_argument("--stop-at", choices=STOP_POINTS)
    parser.add_argument("--file-size-limit", type=int)
    args = parser.parse_args(argv)

    app = create_app({"INSTANCE_PATH": args.instance, "SECRET_KEY": "x", "TESTING": True})
    if args.stop_at in PHASES:
        _freeze_after_phase(args.stop_at)
    elif args.stop_at == "mid-copy":
        _freeze_mid_copy()
    if args.file_size_limit is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the crossing write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.file_size_limit, args.file_size_limit))
    outcome = restore_now(app.config, app.extensions["db"], args.file)
    print(json.dumps({"run_id": outcome.run.id, "status": outcome.run.status, "error": outcome.run.error}))


def _freeze() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


def _freeze_after_phase(point: str) -> None:
    record = runs.report_progress

    def record_then_freeze(db, run_id: int, phase: str, percent: int | None) -> None:
        record(db, run_id, phase, percent)
        if phase == point:
            _freeze()

    runs.report_progress = record_then_freeze


def _freeze_mid_copy() -> None:
    copy = restore.copy_into_live

    def copy_and_freeze_halfway(source, data_path, busy_timeout, report):
        def report_then_freeze(percent: int) -> None:
            report(percent)
            if 0 < percent < 100:
                _freeze()

        copy(source, data_path, busy_timeout, report_then_freeze)

    restore.copy_into_live = copy_and_freeze_halfway


if __name__ == "__main__":
    main()
