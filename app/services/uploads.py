"""Uploaded backups: streamed to a staged file in the backup folder, checked, kept as kind "uploaded".

Nothing is restored here: restoring an upload is a separate, confirmed step. A file that
fails a check is deleted and the error says why in words a person understands.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import BinaryIO

from app.db import Database
from app.services import catalogue
from app.services.backup_checks import BackupCheckError, check_database, read_header, sha256_of
from app.services.backups import BackupResult, fsync_path, prepare_folder, publish_backup, remove_with_side_files

UPLOAD_PREFIX = ".upload-"
UPLOAD_SUFFIX = ".tmp"
ABANDONED_AFTER_SECONDS = 24 * 3600


def open_staged_upload(backups_dir: Path) -> tuple[Path, BinaryIO]:
    """A new owner-only file in the backup folder for an upload to stream into."""
    prepare_folder(backups_dir)
    remove_abandoned_uploads(backups_dir)
    path = backups_dir / f"{UPLOAD_PREFIX}{secrets.token_hex(8)}{UPLOAD_SUFFIX}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    return path, os.fdopen(fd, "w+b")


def accept_upload(db: Database, backups_dir: Path, staged: Path, host: str | None = None) -> BackupResult:
    """Check a fully received upload and keep it as an "uploaded" backup in ``host``'s folder; the staged
    file is always removed."""
    try:
        if staged.stat().st_size == 0:
            raise BackupCheckError("The file is empty (0 bytes): it is not a database backup.")
        _page_size, wal = read_header(staged)
        if wal:
            # A live database copied as it was: this copy is ours, so mark it rollback-journal
            # (what a -wal file held is not in the upload anyway).
            with open(staged, "r+b") as handle:
                handle.seek(18)
                handle.write(b"\x01\x01")
        check_database(staged)
        digest = sha256_of(staged)
        size = staged.stat().st_size
        fsync_path(staged)
        final_path, created_at = publish_backup(staged, backups_dir, "uploaded")
    finally:
        discard_upload(staged)
    catalogue.record_backup(db, final_path.name, "uploaded", size, digest, created_at, host)
    return BackupResult(final_path, size, digest, created_at, 0, "uploaded")


# Files a download from an off-site target streams into (app/services/offsite.py, sealing.py).
FETCH_PATTERNS = (".offsite-down-*.tmp", ".unseal-*.tmp")


def remove_abandoned_uploads(backups_dir: Path, older_than: float = ABANDONED_AFTER_SECONDS) -> list[str]:
    """Remove staged uploads and off-site downloads a killed worker left behind (untouched
    for a day: none is still arriving)."""
    removed = []
    patterns = (f"{UPLOAD_PREFIX}*{UPLOAD_SUFFIX}", *FETCH_PATTERNS)
    for path in (found for pattern in patterns for found in backups_dir.glob(pattern)):
        try:
            if time.time() - path.stat().st_mtime > older_than:
                discard_upload(path)
                removed.append(path.name)
        except FileNotFoundError:
            continue
    return removed


def discard_upload(staged: Path) -> None:
    """Remove a staged upload and anything SQLite may have left beside it."""
    remove_with_side_files(staged)
