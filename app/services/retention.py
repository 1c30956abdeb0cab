"""How many automatic backups are kept: chosen on the Settings page, else ``BACKUP_KEEP_LAST``.

The choice is stored beside the schedules (the scheduler's tables), so restoring the
backed-up data never changes it; until someone saves one, the environment's value holds.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.db import Database
from app.models import RetentionSetting, utcnow

MIN_KEEP = 1
MAX_KEEP = 10_000


class RetentionError(ValueError):
    """A retention count that is not allowed; the message is fit to show a user."""


def keep_last(config: Mapping, db: Database, task: str = "backup_db") -> int:
    """The number of automatic backups of ``task`` to keep (the stored choice, else the default)."""
    with db.session() as session:
        row = session.get(RetentionSetting, task)
    return row.keep_last if row is not None else int(config["BACKUP_KEEP_LAST"])


def is_default(db: Database, task: str = "backup_db") -> bool:
    """True while nobody has saved a retention count (the environment's value applies)."""
    with db.session() as session:
        return session.get(RetentionSetting, task) is None


def parse_keep_last(text: str | None) -> int:
    """A count typed by a user: ASCII digits only, from MIN_KEEP to MAX_KEEP."""
    message = f"Enter a whole number from {MIN_KEEP} to {MAX_KEEP}."
    value = (text or "").strip()
    # isascii: int() would also read "٣" (Arabic-Indic three), which other tools would not.
    if not (value.isascii() and value.isdigit()):
        raise RetentionError(message)
    number = int(value)
    if not MIN_KEEP <= number <= MAX_KEEP:
        raise RetentionError(message)
    return number


def save_keep_last(db: Database, value: int, task: str = "backup_db") -> None:
    """Store the number of automatic backups to keep (applied at the next automatic backup)."""
    if not MIN_KEEP <= value <= MAX_KEEP:
        raise RetentionError(f"Enter a whole number from {MIN_KEEP} to {MAX_KEEP}.")
    with db.writer() as session:
        row = session.get(RetentionSetting, task)
        if row is None:
            session.add(RetentionSetting(task=task, keep_last=value, updated_at=utcnow()))
        else:
            row.keep_last = value
            row.updated_at = utcnow()
