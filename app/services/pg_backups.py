"""Verified backups of a PostgreSQL data database: ``pg_dump -Fc``, checked by a full read, restored whole.

A dump is written by a ``pg_dump`` whose major version is at least the server's (an older
one refuses or, worse, misses what it does not know), to a temporary file in the backup
folder, then read back completely (``pg_restore -l`` lists the table of contents, which
a truncated dump still has; ``pg_restore -f /dev/null`` reads every entry's data),
fsynced, hashed and renamed into place like a SQLite backup. A restore checks the dump
the same way, takes a safety dump of the live data, then runs ``pg_restore --clean
--if-exists --single-transaction --exit-on-error``: all of it or, on any error, nothing.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from app.services.backup_checks import BackupCheckError
from app.services.backups import (
    KINDS,
    BackupError,
    BackupResult,
    BackupSourceError,
    _sha256,
    finish_backup,
    fsync_path,
    new_backup_file,
    publish_backup,
    resolve_backup,
)

log = logging.getLogger(__name__)

DUMP_SUFFIX = ".dump"
# Debian installs each major version's tools here; a pg_dump on the PATH comes first.
DEBIAN_BIN_DIRS = "/usr/lib/postgresql"
VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")
# A table or view in ``pg_restore --list``: "215; 1259 16386 TABLE public item owner" (not
# "TABLE DATA"). Names are not quoted there, so "a b" may be a schema or a name: the tail is
# matched against the live database's names first (``_dump_names``).
LISTED_RELATION = re.compile(r"^\d+; \d+ \d+ (TABLE|VIEW|MATERIALIZED VIEW) (?!DATA )(.+)$")
LISTED_DATABASE = re.compile(r"^;\s+dbname: (.+)$")
LIVE_RELATIONS = """
    SELECT n.nspname, c.relname, c.relkind IN ('v', 'm') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_%'
"""
TOOL_TIMEOUT_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Connection:
    """How the PostgreSQL tools reach a database: a libpq URL without the password, and the environment."""

    dsn: str
    env: dict[str, str]


def connection_for(url: str) -> Connection:
    """libpq settings for a SQLAlchemy URL; the password goes in PGPASSWORD, never on a command line."""
    parsed = make_url(url)
    env = {**os.environ}
    query = dict(parsed.query)
    password = parsed.password or query.pop("password", None)  # ?password=... is a password too
    if password:
        env["PGPASSWORD"] = str(password)
    parsed = parsed.set(drivername="postgresql", query=query)
    dsn = without_password(parsed).render_as_string(hide_password=False)
    return Connection(dsn, env)


def without_password(url: URL) -> URL:
    """``url`` with no password (``URL.set(password=None)`` keeps the password: None means "unchanged")."""
    return url._replace(password=None)


def find_tool(name: str) -> str:
    """The path of ``pg_dump`` or ``pg_restore``: the PATH first, else Debian's newest."""
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path(DEBIAN_BIN_DIRS).glob("*/bin"), key=lambda path: _major_of(path), reverse=True):
        if (folder / name).is_file():
            return str(folder / name)
    raise BackupError(f"{name} was not found: install the PostgreSQL client tools (Debian: postgresql-client).")


def _major_of(folder: Path) -> int:
    try:
        return int(folder.parent.name)
    except ValueError:
        return 0


def tool_major(tool: str) -> int:
    """The major version a PostgreSQL tool reports (``pg_dump --version``)."""
    done = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
    match = VERSION.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise BackupError(f"{tool} --version did not say its version: {done.stdout.strip() or done.stderr.strip()}")
    return int(match.group(1))


def server_major(connection: Connection) -> int:
    """The server's major version (``server_version_num`` // 10000)."""
    import psycopg

    try:
        with psycopg.connect(connection.dsn, password=connection.env.get("PGPASSWORD"), connect_timeout=10) as conn:
            return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
    except psycopg.Error as exc:
        raise BackupSourceError(f"The PostgreSQL database could not be reached: {exc}".rstrip() + ".") from exc


def check_client_version(tool: str, connection: Connection) -> None:
    """Refuse a client older than the server: its dump could miss what it does not know."""
    client, server = tool_major(tool), server_major(connection)
    if client < server:
        name = Path(tool).name
        raise BackupError(
            f"{name} {client} cannot back up a PostgreSQL {server} server: a dump needs a {name} of major version "
            f"{server} or later (Debian: postgresql-client-{server}; set PATH so it comes first)."
        )


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=TOOL_TIMEOUT_SECONDS)
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        shown = "; ".join(detail[-3:]) if detail else f"exit status {done.returncode}"
        raise BackupError(f"{what} failed: {shown}")


def check_dump(path: Path) -> None:
    """Read a dump completely: its table of contents, then every entry's data (to /dev/null)."""
    pg_restore = find_tool("pg_restore")
    env = {**os.environ}
    _run([pg_restore, "--list", str(path)], env, "Reading the dump's table of contents")
    _run([pg_restore, "--file", os.devnull, str(path)], env, "Reading the whole dump")


def perform_pg_backup(
    url: str,
    backups_dir: Path,
    *,
    kind: str = "manual",
    keep_last: int | None = None,
    progress=None,
) -> BackupResult:
    """Write a verified ``pg_dump -Fc`` of ``url`` into ``backups_dir`` (the caller holds the backup lock)."""
    if kind not in KINDS or kind == "uploaded":
        raise ValueError(f"kind must be one of {KINDS} but uploaded")
    report = progress or (lambda phase, percent: None)
    started = time.monotonic()
    connection = connection_for(url)
    pg_dump = find_tool("pg_dump")
    check_client_version(pg_dump, connection)
    with new_backup_file(backups_dir) as temp_path:
        os.close(os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        report("copying", None)
        _run(
            [pg_dump, "--format=custom", "--no-password", "--file", str(temp_path), "--dbname", connection.dsn],
            connection.env,
            "pg_dump",
        )
        report("verifying", None)
        check_dump(temp_path)
        fsync_path(temp_path)
        digest, size = _sha256(temp_path)
        report("finalizing", None)
        final_path, created_at = publish_backup(temp_path, backups_dir, kind, suffix=DUMP_SUFFIX)
    return finish_backup(final_path, created_at, size, digest, kind, keep_last, started)


@dataclass(frozen=True)
class PgRestoreResult:
    """A finished restore of a dump, and the safety dump of the data it replaced."""

    name: str
    size: int
    sha256: str
    safety: BackupResult


def restore_pg_backup(url: str, backups_dir: Path, name: str, report=None, on_safety=None) -> PgRestoreResult:
    """Restore the dump ``name`` into ``url`` after checking it and taking a safety dump (backup lock held).

    ``on_safety(result)`` is called as soon as the safety dump exists, so it is catalogued
    even when the restore then fails."""
    report = report or (lambda phase, percent: None)
    path = resolve_backup(backups_dir, name)
    if path.suffix != DUMP_SUFFIX:
        raise BackupError(f"{name} is a SQLite backup; the data database is PostgreSQL.")
    report("checking", None)
    check_dump(path)
    digest, size = _sha256(path)
    report("safety backup", None)
    safety = perform_pg_backup(url, backups_dir, kind="pre-restore")
    if on_safety is not None:
        on_safety(safety)
    report("restoring", None)
    connection = connection_for(url)
    # A session holding a lock on a table would make DROP wait (and every reader behind it):
    # give up after 30 s, in one transaction, so nothing is changed.
    env = {**connection.env, "PGOPTIONS": f"{connection.env.get('PGOPTIONS', '')} -c lock_timeout=30s".strip()}
    pg_restore = find_tool("pg_restore")
    _run(
        [
            pg_restore,
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--exit-on-error",
            "--no-password",
            "--dbname",
            connection.dsn,
            str(path),
        ],
        env,
        f"Restoring {name} (nothing was changed)",
    )
    log.info("restored %s; safety dump %s", name, safety.name)
    return PgRestoreResult(name, size, digest, safety)


@dataclass(frozen=True)
class PgRestorePreview:
    """What the confirmation page shows before a dump replaces the live PostgreSQL data."""

    name: str
    size: int
    database: str  # DATABASE_URL without its password
    dumped_database: str | None  # the database the dump was taken of, as the dump says
    dump_tables: list[str]  # schema.table
    live_tables: list[str]
    # Live views the dump does not hold: one that depends on a replaced table makes the
    # restore fail (in one transaction: nothing changes), so the page names them.
    live_views: list[str] = ()
    dump_views: list[str] = ()

    @property
    def kept_views(self) -> list[str]:
        return sorted(set(self.live_views) - set(self.dump_views))

    @property
    def tables(self) -> list[tuple[str, bool, bool]]:
        """Every table of either side: (name, in the dump, in the live database)."""
        dump, live = set(self.dump_tables), set(self.live_tables)
        return [(table, table in dump, table in live) for table in sorted(dump | live)]

    @property
    def kept_tables(self) -> list[str]:
        """Live tables the dump does not hold: ``pg_restore --clean`` leaves them as they are."""
        return sorted(set(self.live_tables) - set(self.dump_tables))


def preview_pg_restore(url: str, backups_dir: Path, name: str) -> PgRestorePreview:
    """The quick look for the confirmation page: the dump's table of contents and the live tables
    (the full read of the dump runs in the restore)."""
    path = resolve_backup(backups_dir, name)
    if path.suffix != DUMP_SUFFIX:
        raise BackupCheckError(f"{name} is a SQLite backup; the data database is PostgreSQL.")
    done = subprocess.run(
        [find_tool("pg_restore"), "--list", str(path)], capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS
    )
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        raise BackupCheckError(f"The dump cannot be read: {detail[-1] if detail else done.returncode}.")
    listed, dumped_database = [], None
    for line in done.stdout.splitlines():
        if (relation := LISTED_RELATION.match(line)) is not None:
            listed.append((relation.group(1) != "TABLE", relation.group(2)))
        elif dumped_database is None and (database := LISTED_DATABASE.match(line)) is not None:
            dumped_database = database.group(1).strip()
    live = live_relations(connection_for(url))
    dump_tables = _dump_names([tail for is_view, tail in listed if not is_view], live)
    dump_views = _dump_names([tail for is_view, tail in listed if is_view], live)
    return PgRestorePreview(
        name=name,
        size=path.stat().st_size,
        database=shown_url(url),
        dumped_database=dumped_database,
        dump_tables=sorted(dump_tables),
        live_tables=sorted(f"{schema}.{table}" for schema, table, is_view in live if not is_view),
        live_views=sorted(f"{schema}.{table}" for schema, table, is_view in live if is_view),
        dump_views=sorted(dump_views),
    )


def shown_url(url: str) -> str:
    """A database URL for pages: no password, also not as a ``?password=`` parameter."""
    parsed = make_url(url)
    query = {key: value for key, value in parsed.query.items() if key != "password"}
    return without_password(parsed.set(query=query)).render_as_string(hide_password=False)


def _dump_names(tails: list[str], live: list[tuple[str, str, bool]]) -> list[str]:
    """``schema.name`` for each "<schema> <name> <owner>" tail of the dump's list: a live
    relation whose schema and name start the tail is that one (names may hold spaces);
    otherwise the first word is the schema and the last the owner."""
    known = sorted(((schema, name) for schema, name, _view in live), key=lambda pair: -len(pair[0] + pair[1]))
    names = []
    for tail in tails:
        match = next((f"{schema}.{name}" for schema, name in known if tail.startswith(f"{schema} {name} ")), None)
        if match is None:
            schema, _, rest = tail.partition(" ")
            match = f"{schema}.{rest.rsplit(' ', 1)[0]}"
        names.append(match)
    return names


def live_relations(connection: Connection) -> list[tuple[str, str, bool]]:
    """The live database's tables and views: (schema, name, is a view), system schemas left out."""
    import psycopg

    try:
        with psycopg.connect(connection.dsn, password=connection.env.get("PGPASSWORD"), connect_timeout=10) as conn:
            return sorted((row[0], row[1], bool(row[2])) for row in conn.execute(LIVE_RELATIONS))
    except psycopg.Error as exc:
        raise BackupSourceError(f"The PostgreSQL database could not be reached: {exc}".rstrip() + ".") from exc
