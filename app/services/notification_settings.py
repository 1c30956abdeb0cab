"""Notification settings: where messages go, which events send one, the ping URL (state database)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from app.db import Database
from app.models import NotificationSend, NotificationSettings, utcnow
from app.services.notification_urls import mask, mask_ping, target_key

log = logging.getLogger(__name__)

EVENTS: dict[str, str] = {
    "run_failed": "A run failed (any task)",
    "verification_failed": "A backup verification failed",
    "offsite_failed": "An off-site upload failed",
    "stale": "No success for longer than twice the schedule's period",
    "recovered": "Recovered: the first success after a failure or stale",
    "restore_done": "A restore finished",
    "success": "Every successful run",
}
DEFAULT_EVENTS = ("run_failed", "verification_failed", "offsite_failed", "stale", "recovered")


@dataclass(frozen=True)
class NotificationConfig:
    """The saved notification settings (real URLs: never show them, see :func:`public_view`)."""

    urls: tuple[str, ...] = ()
    events: tuple[str, ...] = DEFAULT_EVENTS
    ping_url: str | None = None

    def wants(self, event: str) -> bool:
        return bool(self.urls) and event in self.events


def load_config(db: Database) -> NotificationConfig:
    """The saved settings; the defaults when nothing was saved."""
    with db.session() as session:
        row = session.get(NotificationSettings, 1)
    if row is None:
        return NotificationConfig()
    urls = tuple(line for line in row.urls.split("\n") if line)
    events = tuple(event for event in row.events.split(",") if event in EVENTS)
    return NotificationConfig(urls, events, row.ping_url)


def save_config(db: Database, urls: list[str], events: list[str], ping_url: str | None) -> NotificationConfig:
    """Store checked settings (see ``notification_urls.parse_urls``); the state file stays owner-only."""
    unknown = [event for event in events if event not in EVENTS]
    if unknown:
        raise ValueError(f"unknown events: {unknown}")
    with db.writer() as session:
        row = session.get(NotificationSettings, 1) or NotificationSettings(id=1)
        row.urls = "\n".join(urls)
        row.events = ",".join(event for event in EVENTS if event in events)
        row.ping_url = ping_url
        row.updated_at = utcnow()
        session.merge(row)
    if db.path is not None:  # PostgreSQL: its own access rules protect the secrets
        owner_only(db.path)
    log.info("notification settings saved: %d URL(s), events %s, ping URL %s", len(urls), events, bool(ping_url))
    return load_config(db)


def owner_only(path: Path) -> None:
    """The state database now holds secrets: mode 0600, as for backups (SQLite gives -wal/-shm the same)."""
    for suffix in ("", "-wal", "-shm"):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            os.chmod(candidate, 0o600)


def public_view(db: Database, config: NotificationConfig | None = None) -> dict:
    """What pages and answers may show: masked URLs, each with its last send, events, masked ping URL."""
    config = config or load_config(db)
    keys = [target_key(url) for url in config.urls]
    if config.ping_url:
        keys.append(target_key(config.ping_url))
    last = last_sends(db, keys)
    return {
        "urls": [{"url": mask(url), "last_send": last.get(target_key(url))} for url in config.urls],
        "events": list(config.events),
        "ping_url": mask_ping(config.ping_url) if config.ping_url else None,
        "ping_last_send": last.get(target_key(config.ping_url)) if config.ping_url else None,
    }


def last_sends(db: Database, keys: list[str]) -> dict[str, NotificationSend]:
    """The newest recorded send for each target key."""
    if not keys:
        return {}
    with db.session() as session:
        newest = (
            select(func.max(NotificationSend.id))
            .where(NotificationSend.target_key.in_(keys))
            .group_by(NotificationSend.target_key)
        )
        rows = session.scalars(select(NotificationSend).where(NotificationSend.id.in_(newest)))
        return {row.target_key: row for row in rows}
