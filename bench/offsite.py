"""Off-site upload cost: a backup sealed (zstd, age) and uploaded to a local S3 server, against
``rclone copy`` of the same plaintext file to the same server, in paired rounds.

The server is ``rclone serve s3`` (tests/support/s3_servers.py) on this machine. Each round
runs the baseline and the subject back to back (in alternating order): ``rclone copyto``
of the backup file, then the app's own upload (``offsite.upload_backup``: seal, multipart
upload, read-back check) in a fresh process whose peak resident memory (VmHWM) is
reported. The objects are deleted after each round.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.servers import run_dir

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Runs in the child: the real app (its own instance folder), one target, one upload.
CHILD = """
import hashlib, json, sys, time
from pathlib import Path
from app import create_app
from app.services import offsite, offsite_targets
instance, backup, endpoint, access, secret, recipient = sys.argv[1:7]
app = create_app({"INSTANCE_PATH": instance, "SECRET_KEY": "bench", "SCHEDULER_ENABLED": False})
db = app.extensions["db"]
with app.app_context():
    settings = offsite_targets.TargetSettings(
        name="bench", endpoint=endpoint, region="us-east-1", bucket="bench", prefix="subject/", addressing="path",
        access_key=access, secret_key=secret, encryption="age", recipient=recipient, passphrase=None,
        keep_last=100, enabled=True)
    existing = offsite_targets.list_targets(db)
    target = existing[0] if existing else offsite_targets.save_target(db, settings)
    digest = sys.argv[7]
    started = time.monotonic()
    outcome = offsite.upload_backup(app.config, db, target, Path(backup), digest, None)
    wall = time.monotonic() - started
peak_kb = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"ok": outcome.ok, "message": outcome.message, "wall_s": wall, "sealed_bytes": outcome.sealed_size,
                  "peak_rss_mb": int(peak_kb) // 1024}))
"""


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _rclone_copy(server, source: Path) -> float:
    env = {
        **os.environ,
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": server.endpoint,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": server.access_key,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": server.secret_key,
        "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
    }
    rclone = shutil.which("rclone", path=str(Path(sys.executable).parent)) or "rclone"
    started = time.monotonic()
    subprocess.run(
        [rclone, "--config", "/dev/null", "copyto", str(source), "bench:bench/baseline/" + source.name],
        check=True,
        env=env,
        capture_output=True,
    )
    return time.monotonic() - started


def _subject(server, instance: Path, backup: Path, digest: str, recipient: str) -> dict:
    command = [
        sys.executable,
        "-c",
        CHILD,
        str(instance),
        str(backup),
        server.endpoint,
        server.access_key,
        server.secret_key,
        recipient,
        digest,
    ]
    answer = subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True, text=True)
    figures = json.loads(answer.stdout.strip().splitlines()[-1])
    if not figures["ok"]:
        raise RuntimeError(f"the upload failed: {figures['message']}")
    return figures


def _empty_bucket(server) -> None:
    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="bench"):
        for item in page.get("Contents", []):
            client.delete_object(Bucket="bench", Key=item["Key"])


def measure_offsite(source: Path, repeats: int, log) -> dict:
    """Paired rounds of ``rclone copy`` (plaintext) and the app's sealed upload of ``source``."""
    import pyrage

    from tests.support.s3_servers import RcloneS3

    folder = run_dir("offsite")
    backup = folder / "backup-bench.sqlite3"
    shutil.copyfile(source, backup)  # the bench database is idle: this copy is a consistent backup
    digest = _sha256(backup)
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    server = RcloneS3(folder / "s3").start()
    rounds = []
    try:
        server.make_bucket("bench")
        for number in range(repeats):
            subject_first = number % 2 == 1
            if subject_first:
                subject = _subject(server, folder / "instance", backup, digest, recipient)
                baseline = _rclone_copy(server, backup)
            else:
                baseline = _rclone_copy(server, backup)
                subject = _subject(server, folder / "instance", backup, digest, recipient)
            _empty_bucket(server)
            rounds.append(
                {
                    "rclone_copy_s": round(baseline, 2),
                    "upload_s": round(subject["wall_s"], 2),
                    "ratio": round(subject["wall_s"] / baseline, 2),
                    "peak_rss_mb": subject["peak_rss_mb"],
                    "sealed_bytes": subject["sealed_bytes"],
                }
            )
            log(
                f"offsite: round {number + 1}: rclone copy {baseline:.2f} s, sealed upload "
                f"{subject['wall_s']:.2f} s ({rounds[-1]['ratio']:.2f}x), peak {subject['peak_rss_mb']} MB"
            )
    finally:
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)
    ratios = [item["ratio"] for item in rounds]
    plain = source.stat().st_size
    return {
        "rounds": rounds,
        "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
        "peak_rss_mb_max": max(item["peak_rss_mb"] for item in rounds),
        "plain_bytes": plain,
        "sealed_bytes": rounds[-1]["sealed_bytes"],
        "stored_over_local": round(rounds[-1]["sealed_bytes"] / plain, 3),
    }
