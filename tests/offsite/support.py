"""Helpers for off-site tests: a real rclone S3 server with faults, and the app's side."""

from __future__ import annotations

import resource
import signal
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from app.services.backup_tasks import BACKUP_TASK
from app.services.runner import run_task_now
from tests.support.s3_servers import RcloneS3

# A throwaway age pair made for these tests (age-keygen); it protects nothing real.
RECIPIENT = "age1qwzeq24g0m5d2rgsv592qzlklszf9wkzmhrxvcde7dkmul9r4swsxxqh7c"
IDENTITY = "AGE-SECRET-KEY-1M2F6DLHC2A8UQS8JNHNS6054YLQ30ZAFSSR8AKFLK8NA6GVSCX5QUK97MT"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


class FaultyS3(RcloneS3):
    """``rclone serve s3`` whose storage can fail as a full disk does, with known keys.

    ``file_size_limit`` makes the server's writes fail past that many bytes (RLIMIT_FSIZE
    with SIGXFSZ ignored: the kernel refuses the write with EFBIG, as a full disk refuses
    it with ENOSPC; a tmpfs of that size would need mount rights CI may not have).
    """

    def __init__(self, root: Path, file_size_limit: int | None = None) -> None:
        super().__init__(root)
        self.access_key, self.secret_key = ACCESS_KEY, SECRET_KEY
        self.file_size_limit = file_size_limit

    def in_child(self) -> None:
        super().in_child()
        if self.file_size_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_size_limit, self.file_size_limit))

    def objects(self, bucket: str = "backups") -> dict[str, Path]:
        """Object key -> the file that holds it on the server's disk."""
        folder = self.data_dir / bucket
        return {str(path.relative_to(folder)): path for path in sorted(folder.rglob("*")) if path.is_file()}

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
