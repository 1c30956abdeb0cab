"""A throwaway PostgreSQL cluster for tests: initdb in a temp folder, a free port, a socket of its own.

``initdb`` refuses to run as root (CI runs as root), so the cluster belongs to the
``postgres`` user when the tests run as root. Each test gets a database of its own
(``PostgresCluster.new_database``); the cluster is stopped and deleted at the end.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.server import free_port

PG_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def postgres_bin() -> Path:
    """The folder of the newest installed PostgreSQL server binaries; fail with how to get them."""
    configured = os.environ.get("POSTGRES_BIN")
    if configured:
        return Path(configured)
    for candidate in PG_BIN_CANDIDATES:
        if (candidate / "initdb").exists():
            return candidate
    raise RuntimeError("PostgreSQL server binaries not found: run scripts/ensure-postgres (make test does).")


class PostgresCluster:
    """One PostgreSQL server on a free port, reachable over its own Unix socket and 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.bin = postgres_bin()
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._counter = 0

    def _as_owner(self, *command: str | Path) -> list[str]:
        args = [str(part) for part in command]
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args

    def start(self) -> PostgresCluster:
        """initdb, then start the server and wait until it accepts connections."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for folder in (self.root, self.socket_dir):
                os.chown(folder, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            self._as_owner(self.bin / "initdb", "-D", self.data, "-U", self.user, "-A", "trust", "-E", "UTF8"),
            check=True,
            capture_output=True,
        )
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        start = self._as_owner(self.bin / "pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-o", options)
        subprocess.run([*start, "-w", "start"], check=True, capture_output=True)
        return self

    def stop(self) -> None:
        """Stop the server immediately and delete its folder."""
        subprocess.run(
            self._as_owner(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3) for ``database`` over TCP on 127.0.0.1."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql; return its unaligned output."""
        result = subprocess.run(
            [
                self.bin / "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    def new_database(self) -> str:
        """Create an empty database; return its name."""
        self._counter += 1
        name = f"test_{os.getpid()}_{self._counter}_{int(time.time() * 1000) % 100000}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name


def start_cluster() -> PostgresCluster:
    """A started cluster in a fresh temporary folder (readable by the postgres user)."""
    root = Path(tempfile.mkdtemp(prefix="pg-test-"))
    os.chmod(root, 0o755)
    return PostgresCluster(root).start()
