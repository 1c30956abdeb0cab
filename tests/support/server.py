"""Run the real app under gunicorn on a free port, for tests that span processes.

The one way tests start gunicorn: ``GunicornServer`` for one server, the ``gunicorn``
fixture (``tests/support/fixtures.py``) for servers stopped at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.sqlite import query
from tests.support.waiting import wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Shorter than the defaults (1 s and 3 s) so a saved schedule is applied, and a killed
# leader replaced, sooner; tests of the default timing build a SchedulerService instead.
FAST_SCHEDULER = {"SCHEDULER_TICK_SECONDS": "0.25", "SCHEDULER_FOLLOWER_RETRY_SECONDS": "0.5"}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GunicornServer:
    """``gunicorn app.wsgi:app`` with its own instance folder; start, stop, restart, inspect."""

    def __init__(self, instance: Path, workers: int = 2, **env: str) -> None:
        self.instance = instance
        self.workers = workers
        self.port = free_port()
        self.env = {
            **os.environ,
            "INSTANCE_PATH": str(instance),
            "SECRET_KEY": "test-secret",
            "SCHEDULER_TIMEZONE": "Europe/Berlin",
            "PYTHONUNBUFFERED": "1",
            **FAST_SCHEDULER,
            **env,
        }
        self.process: subprocess.Popen | None = None
        self.log_path = instance / "gunicorn.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> GunicornServer:
        """Start and wait until /settings answers."""
        self.instance.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a")  # noqa: SIM115 - closed with the process
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            str(PROJECT_ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--access-logfile",
            "-",
            "app.wsgi:app",
        ]
        self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/settings", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop the master (and so its workers) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def worker_pids(self) -> list[int]:
        """The pids of the master's worker processes."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """A JSON API call; returns (status, decoded body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def query(self, sql: str, *args) -> list[tuple]:
        """Rows from the app's state database (schedules, runs, heartbeat), read as another process would.

        On a PostgreSQL state database (``STATE_DATABASE_URL``) too: write ``?`` for parameters either way.
        """
        url = self.env.get("STATE_DATABASE_URL", "")
        if url.startswith("postgresql"):
            import psycopg

            with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
                return connection.execute(sql.replace("?", "%s"), args).fetchall()
        return query(self.instance / "state.db", sql, *args)

    def pids(self) -> list[int]:
        """The master's pid and its workers' (every process of this "host")."""
        return [self.process.pid, *self.worker_pids()]

    def wait_until_applied(self, timeout: float = 15) -> dict:
        """Wait until the leader has applied the saved backup schedule; return the job."""

        def applied():
            status, body = self.request("GET", "/api/v1/settings/scheduler")
            assert status == 200, body
            job = body["jobs"][0]
            return None if job["pending_apply"] else job

        return wait_for(applied, timeout, interval=0.1, message=f"schedule not applied within {timeout} s")

    def leader_pid(self, fresh_within: float = 10) -> int | None:
        """The pid of the worker whose scheduler heartbeat is fresh, else None."""
        rows = self.query("SELECT leader_pid, heartbeat_at FROM scheduler_state")
        if not rows:
            return None
        pid, beat = rows[0]
        beat = beat if isinstance(beat, datetime) else datetime.fromisoformat(beat)
        age = datetime.now(UTC) - beat.replace(tzinfo=UTC)
        return pid if age < timedelta(seconds=fresh_within) else None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
