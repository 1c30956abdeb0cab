"""Hold the app's single-flight backup lock, as a running backup in another worker would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.services.backups import backup_lock


@contextmanager
def backup_running(app) -> Iterator[None]:
    """While inside, every new backup of ``app`` must be refused as busy."""
    lock = backup_lock(Path(app.config["DATABASE_PATH"]))
    assert lock.try_acquire(), "the backup lock was already held"
    try:
        yield
    finally:
        lock.release()
