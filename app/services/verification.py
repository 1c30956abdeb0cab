"""Backup verification: do the newest backups still open, pass SQLite's full check, and match their sha256?

A file that was fine when it was made can rot on disk, be truncated by a full disk or be
replaced by hand. Each chosen file is opened read-only (``trusted_schema=OFF``), checked
with a full ``integrity_check`` and hashed; its sha256 is compared with the one recorded
when it was made. A file removed meanwhile (retention, a user) is reported, not failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.db import Database
from app.services import catalogue
from app.services.backup_checks import BackupCheckError, check_database, sha256_of
from app.services.backups import BackupError
from app.services.catalogue import CataloguedBackup
from app.services.errors import TaskError
from app.services.pg_backups import DUMP_SUFFIX, check_dump
from app.services.priority import run_at_low_priority


class VerificationFailed(TaskError):
    """One or more backups are damaged; the message names each and why."""


@dataclass
class VerificationReport:
    """What one verification run found."""

    verified: list[str] = field(default_factory=list)
    first_recorded: list[str] = field(default_factory=list)  # no sha256 was recorded when made
    vanished: list[str] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{len(self.verified)} backup(s) verified"]
        if self.first_recorded:
            parts.append(f"{len(self.first_recorded)} had no recorded sha256 (recorded now)")
        if self.vanished:
            parts.append(f"{len(self.vanished)} deleted while checking ({', '.join(self.vanished)})")
        return "; ".join(parts) + "."


def backups_to_verify(listed: list[CataloguedBackup], count: int) -> list[CataloguedBackup]:
    """The newest ``count`` backups, and every older one never verified."""
    return listed[:count] + [backup for backup in listed[count:] if backup.verified_at is None]


def verify_backups(
    db: Database, backups_dir: Path, count: int, report: Callable[[str, int | None], None], host: str | None = None
) -> VerificationReport:
    """Verify the chosen backups of ``host``'s folder; raise :class:`VerificationFailed` if any is damaged."""
    chosen = backups_to_verify(catalogue.catalogued_backups(db, backups_dir), count)
    found = VerificationReport()
    for number, backup in enumerate(chosen):
        report("verifying", round(100 * number / len(chosen)))
        problem = _check(db, backups_dir / backup.name, backup, found, host)
        if problem is not None:
            found.damaged[backup.name] = problem
            catalogue.mark_damaged(db, backup.name, problem, backup.size, backup.created_at, backup.kind)
    if found.damaged:
        listed = "; ".join(f"{name}: {why}" for name, why in found.damaged.items())
        raise VerificationFailed(f"{len(found.damaged)} of {len(chosen)} backup(s) failed verification: {listed}")
    return found


def _hash_and_check(path: Path) -> str:
    digest = sha256_of(path)
    if path.suffix == DUMP_SUFFIX:  # a pg_dump: pg_restore reads it all
        try:
            check_dump(path)
        except BackupError as exc:
            raise BackupCheckError(str(exc)) from exc
    else:
        check_database(path)
    return digest


def _check(
    db: Database, path: Path, backup: CataloguedBackup, found: VerificationReport, host: str | None
) -> str | None:
    """None when the file is fine (and recorded as verified), else what is wrong with it."""
    try:
        # Reading and checking a whole file yields the CPU and the disk to the app (issue 15).
        digest = run_at_low_priority(lambda relay: _hash_and_check(path), name="verify-backup")
    except FileNotFoundError:
        found.vanished.append(backup.name)
        return None
    except BackupCheckError as exc:
        if not path.exists():
            found.vanished.append(backup.name)
            return None
        return str(exc)
    except OSError as exc:
        return f"it could not be read ({exc.strerror})"
    if backup.sha256 is not None and digest != backup.sha256:
        return "its sha256 no longer matches the one recorded when it was made"
    if backup.sha256 is None:
        found.first_recorded.append(backup.name)
        catalogue.record_backup(db, backup.name, backup.kind, backup.size, digest, backup.created_at, host)
    else:
        catalogue.mark_verified(db, backup.name)
    found.verified.append(backup.name)
    return None
