"""The backup catalogue in the state database: each file's kind, size, sha256, last verification and host.

This host's folder stays the truth of which backups exist here (an operator may delete
or copy files by hand); the catalogue adds what was measured when each was made or
checked. When several hosts share the state database (PostgreSQL), the list also shows
the catalogue's files that live in another host's folder, as "on host <name>", so every
host shows the same list whether or not ``BACKUPS_DIR`` is shared.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError

from app.db import Database
from app.models import BackupRecord, utcnow
from app.services.backups import BackupFile, BackupNotFound, delete_backup, list_backups

log = logging.getLogger(__name__)

RECORD_RETRY_SECONDS = 60


@dataclass(frozen=True)
class CataloguedBackup:
    """A backup file with what the catalogue knows of it (None: made before the catalogue)."""

    name: str
    size: int
    created_at: datetime
    kind: str
    sha256: str | None
    verified_at: datetime | None
    damaged: str | None = None
    # The host whose folder received the file (None: not recorded); ``here``: it is in this
    # host's folder (False only for another host's file, listed from the shared catalogue).
    host: str | None = None
    here: bool = True


class BackupOnAnotherHost(BackupNotFound):
    """The catalogue places the backup in another host's folder, not in this one."""

    def __init__(self, name: str, host: str) -> None:
        super().__init__(f"This backup is on host {host}, not on this one (BACKUPS_DIR is not shared).")
        self.name = name
        self.host = host


def record_backup(
    db: Database, name: str, kind: str, size: int, sha256: str, created_at: datetime, host: str | None = None
) -> None:
    """Add (or replace) the entry of a file just made and verified in ``host``'s folder.

    The file exists already: another process holding the state database's write lock
    must not fail the backup, so this retries for up to a minute, as recording a run's
    outcome does.
    """
    record = BackupRecord(
        name=name, kind=kind, size=size, sha256=sha256, created_at=created_at, verified_at=utcnow(), host=host
    )
    deadline = time.monotonic() + RECORD_RETRY_SECONDS
    while True:
        try:
            with db.writer() as session:
                session.merge(record)
            return
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("catalogue entry of %s not recorded yet (%s); retrying", name, exc.orig)
            time.sleep(0.5)


def mark_verified(db: Database, name: str) -> None:
    """Note that the file passed its checks again just now (only shown: a busy database skips it)."""
    try:
        with db.writer() as session:
            record = session.get(BackupRecord, name)
            if record is not None:
                record.verified_at = utcnow()
                record.damaged = None
    except OperationalError as exc:
        log.warning("verification time of %s not recorded (%s)", name, exc.orig)


def mark_damaged(db: Database, name: str, reason: str, size: int, created_at: datetime, kind: str) -> None:
    """Note that the file failed its verification, and why (shown in the list until it passes again)."""
    with db.writer() as session:
        record = session.get(BackupRecord, name)
        if record is None:
            record = BackupRecord(name=name, kind=kind, size=size, sha256="", created_at=created_at)
            session.add(record)
        record.damaged = reason


def forget_backup(db: Database, name: str) -> None:
    """Drop the entry of a deleted file."""
    with db.writer() as session:
        session.execute(delete(BackupRecord).where(BackupRecord.name == name))


def recorded_sha256(db: Database, name: str) -> str | None:
    """The sha256 recorded when the file was made, if it was."""
    with db.session() as session:
        return session.scalar(select(BackupRecord.sha256).where(BackupRecord.name == name))


def catalogued_backups(db: Database, backups_dir: Path) -> list[CataloguedBackup]:
    """The files in the folder, newest first, with their catalogue entries."""
    files = list_backups(backups_dir)
    with db.session() as session:
        records = {record.name: record for record in session.scalars(select(BackupRecord))}
    return [_merge(backup, records.get(backup.name)) for backup in files]


def listed_backups(db: Database, backups_dir: Path, host: str) -> list[CataloguedBackup]:
    """What the backup list shows, newest first: the files in this host's folder and, when
    several hosts share the state database, the catalogue's files in another host's folder.

    An entry made here (or with no host recorded) whose file is gone was deleted by hand:
    it is not listed, as on one host.
    """
    files = list_backups(backups_dir)
    with db.session() as session:
        records = {record.name: record for record in session.scalars(select(BackupRecord))}
    listed = [_merge(backup, records.get(backup.name)) for backup in files]
    if db.shared:
        here = {backup.name for backup in files}
        listed += [
            _elsewhere(record)
            for record in records.values()
            if record.name not in here and record.host is not None and record.host != host
        ]
        listed.sort(key=lambda entry: entry.name, reverse=True)
    return listed


def host_holding(db: Database, backups_dir: Path, name: str, host: str) -> str | None:
    """The other host whose folder holds ``name`` per the shared catalogue; None when it is
    here, unknown, or the state database is not shared."""
    if not db.shared or (backups_dir / name).is_file():
        return None
    with db.session() as session:
        holder = session.scalar(select(BackupRecord.host).where(BackupRecord.name == name))
    return holder if holder is not None and holder != host else None


def require_here(db: Database, backups_dir: Path, name: str, host: str) -> None:
    """Raise :class:`BackupOnAnotherHost` when the catalogue places ``name`` in another host's folder."""
    holder = host_holding(db, backups_dir, name, host)
    if holder is not None:
        raise BackupOnAnotherHost(name, holder)


def catalogued_backup(db: Database, backups_dir: Path, name: str) -> CataloguedBackup | None:
    """One file's listing entry (the shape every surface shows a backup in)."""
    return next((entry for entry in catalogued_backups(db, backups_dir) if entry.name == name), None)


def _merge(backup: BackupFile, record: BackupRecord | None) -> CataloguedBackup:
    known = record is not None and record.size == backup.size
    return CataloguedBackup(
        name=backup.name,
        size=backup.size,
        created_at=backup.created_at,
        kind=backup.kind,
        sha256=(record.sha256 or None) if known else None,
        verified_at=record.verified_at if known else None,
        damaged=record.damaged if record is not None else None,
        host=record.host if known else None,
    )


def _elsewhere(record: BackupRecord) -> CataloguedBackup:
    return CataloguedBackup(
        name=record.name,
        size=record.size,
        created_at=record.created_at,
        kind=record.kind,
        sha256=record.sha256 or None,
        verified_at=record.verified_at,
        damaged=record.damaged,
        host=record.host,
        here=False,
    )


def delete_catalogued(db: Database, backups_dir: Path, name: str, host: str) -> None:
    """Delete a backup file by its exact name, and its catalogue entry.

    A file in another host's folder is not deleted here: :class:`BackupOnAnotherHost`.
    """
    require_here(db, backups_dir, name, host)
    delete_backup(backups_dir, name)
    forget_backup(db, name)


def unshared_folder_warning(db: Database, backups_dir: Path, host: str, has_offsite: bool) -> str | None:
    """Several hosts: a warning when backups live only in one host's own folder and no
    off-site target keeps a copy, since a dead host takes its backups with it (DESIGN section 9)."""
    if not db.shared or has_offsite:
        return None
    elsewhere = sorted({entry.host for entry in listed_backups(db, backups_dir, host) if entry.host and not entry.here})
    if not elsewhere:
        return None
    return (
        f"Backups made on {', '.join(elsewhere)} are not in this host's BACKUPS_DIR, and no off-site target is "
        "enabled: share the backup folder between hosts or add an off-site target."
    )
