"""Run one database backup as the app does (claim_task + complete_task) in a process of its own.

The crash tests SIGKILL this process at chosen moments; the disk tests run it under a
file-size limit. When it finishes it prints the run's outcome as one JSON line.

    python -m tests.faults.backup_driver INSTANCE [--stop-at POINT] [--file-size-limit BYTES]

``--stop-at`` freezes the process (SIGSTOP) right after the run reached POINT, so a test
can kill it at an exact moment: "starting" (claimed, nothing written), one of the phases
"copying", "verifying" or "finalizing" (just after the run recorded it), or "published"
(the verified file has its final name; the run is not finished). Freezing changes only
when the process runs, never what the backup does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal

from app import create_app
from app.services import backups, runs
from app.services.runner import claim_task, complete_task

PHASES = ("copying", "verifying", "finalizing")
STOP_POINTS = ("starting", *PHASES, "published")


def main(argv: list[str] | None = None) -> None:
    """Create the app on INSTANCE, run one manual backup, print its outcome."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("instance")
    parser.add_argument("--stop-at", choices=STOP_POINTS)
    parser.add_argument("--file-size-limit", type=int, help="RLIMIT_FSIZE in bytes for the backup")
    args = parser.parse_args(argv)

    app = create_app({"INSTANCE_PATH": args.instance, "SECRET_KEY": "x", "TESTING": True})
    db = app.extensions["db"]
    if args.stop_at:
        _install_stop_point(args.stop_at)
    if args.file_size_limit is not None:
        # The write that crosses the limit then fails with EFBIG instead of killing us.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.file_size_limit, args.file_size_limit))

    run, lock = claim_task(app.config, db, "backup_db", "manual")
    if args.stop_at == "starting":
        _freeze()
    outcome = complete_task(app.config, db, run, lock)
    print(json.dumps({"run_id": outcome.run.id, "status": outcome.run.status, "error": outcome.run.error}))


def _freeze() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


def _install_stop_point(point: str) -> None:
    if point in PHASES:
        record = runs.report_progress

        def record_then_freeze(db, run_id: int, phase: str, percent: int | None) -> None:
            record(db, run_id, phase, percent)
            if phase == point:
                _freeze()

        runs.report_progress = record_then_freeze
    elif point == "published":
        publish = backups.publish_backup

        def publish_then_freeze(*args):
            published = publish(*args)
            _freeze()
            return published

        backups.publish_backup = publish_then_freeze


if __name__ == "__main__":
    main()
