"""``python -m bench``: build (or reuse) the database, run every measurement, report targets.

Wall time with the default 1 GiB database on 2 cores is about 6 minutes, most of it the
scheduler's real minute boundaries, which run beside the other measurements.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.data import ensure_dataset
from bench.report import RESULTS_DIR, table, targets, write_json
from bench.suite import run_suite
from bench.system import CpuWatch

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MEASUREMENTS = (
    "impact",
    "backup",
    "restore",
    "polling",
    "weight",
    "scheduler",
    "notify",
    "offsite",
    "pg_scheduler",
    "pg_dump",
)
QUICK_MEASUREMENTS = ("impact", "backup", "restore")  # issue 15's targets, in about 2-3 minutes
QUICK_REPEATS = 3
QUIET_SAMPLE_SECONDS = 3.0
BUSY_WARNING_PERCENT = 10.0  # of one core, used by processes other than the benchmark


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="database size in MiB (default 1024; 64 is quick)")
    parser.add_argument(
        "--repeats",
        type=int,
        help="paired rounds of the backup and restore cost comparisons (default 5, 3 with --quick)",
    )
    parser.add_argument(
        "--fires", type=int, default=5, help="scheduled runs to time, one a minute (default 5; 0 skips them)"
    )
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(MEASUREMENTS)} (default: all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"only {', '.join(QUICK_MEASUREMENTS)} (unless --only), {QUICK_REPEATS} rounds of each",
    )
    parser.add_argument(
        "--synthetic-load",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run a process using 25 %% of a core during the impact and cost measurements (default: on)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json", help="where to write the JSON")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    parser.add_argument(
        "--wait-quiet",
        type=int,
        default=0,
        metavar="SECONDS",
        help="wait up to this long for other processes to leave the CPU idle before measuring (default 0)",
    )
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (QUICK_REPEATS if args.quick else 5)
    only = args.only or ",".join(QUICK_MEASUREMENTS if args.quick else MEASUREMENTS)
    args.only = [name.strip() for name in only.split(",") if name.strip()]
    unknown = set(args.only) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    if not 16 <= args.size_mb <= 64 * 1024:
        parser.error("--size-mb must be from 16 to 65536")
    if not 1 <= args.repeats <= 50 or not 0 <= args.fires <= 30 or not 0 <= args.wait_quiet <= 3600:
        parser.error("--repeats must be from 1 to 50, --fires from 0 to 30 and --wait-quiet from 0 to 3600")
    return args


class Log:
    """Progress lines on stderr, stamped with seconds since the start (thread-safe)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            print(f"[{time.monotonic() - self.started:5.0f} s] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 1 a target missed under --strict, 2 a measurement failed."""
    args = parse_args(argv)
    log = Log()
    started_at = datetime.now(UTC)
    dataset = ensure_dataset(args.size_mb, log)
    quiet = _check_quiet(log, args.wait_quiet)
    results = run_suite(
        args.only, dataset, args.repeats, args.fires, log, args.synthetic_load, args.quick, args.size_mb
    )
    results["meta"] = _meta(args, dataset, started_at, log) | {"before_start": quiet}
    results["targets"] = [target.as_dict() for target in targets(results)]
    print(table(results))
    write_json(results, args.output)
    print(f"\nresults written to {args.output}")
    failed = [key for key, value in results.items() if isinstance(value, dict) and "error" in value]
    missed = [target for target in results["targets"] if target["verdict"] == "missed"]
    return 2 if failed else 1 if args.strict and missed else 0


def _check_quiet(log, wait_seconds: int) -> dict:
    """Sample what other processes use before starting (waiting for quiet if asked)."""
    for _ in range(int(wait_seconds / QUIET_SAMPLE_SECONDS) + 1):
        watch = CpuWatch()
        time.sleep(QUIET_SAMPLE_SECONDS)
        load = watch.stop()
        if load["others_percent_of_core"] <= BUSY_WARNING_PERCENT or not wait_seconds:
            break
        log(f"waiting for a quiet machine: other processes use {load['others_percent_of_core']} % of a core")
    if load["others_percent_of_core"] > BUSY_WARNING_PERCENT:
        log(
            f"warning: other processes use {load['others_percent_of_core']} % of a core; "
            "latency and CPU figures will be inflated (see 'others' in each result)"
        )
    return load


def _meta(args, dataset, started_at: datetime, log) -> dict:
    backups_py = PROJECT_ROOT / "app" / "services" / "backups.py"

    def git(*command: str) -> str:
        done = subprocess.run(["git", *command], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "started_at": started_at.isoformat(),
        "wall_seconds": round(time.monotonic() - log.started, 1),
        "arguments": {
            "size_mb": args.size_mb,
            "repeats": args.repeats,
            "fires": args.fires,
            "only": args.only,
            "quick": args.quick,
            "synthetic_load": args.synthetic_load,
        },
        "dataset": dataset.as_dict(),
        "sqlite_version": sqlite3.sqlite_version,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "backups_py_modified": bool(git("status", "--porcelain", str(backups_py))),
        "backups_py_sha256": hashlib.sha256(backups_py.read_bytes()).hexdigest()[:16],
    }


if __name__ == "__main__":
    sys.exit(main())
