"""The dead-man's-switch ping, Healthchecks style (Uptime Kuma push monitors accept it too).

``<url>/start`` when a scheduled backup starts, ``<url>`` when it succeeds, ``<url>/fail``
with the error (at most 10 KB) when it fails; each with ``?rid=<uuid>`` tying the three
together. Healthchecks wants the run id to be a UUID: ours is derived from the run's id.
An outside service then notices a missed schedule even when this whole host is down.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping

from app.db import Database
from app.models import JobRun, utcnow
from app.services.notification_urls import mask_ping, target_key

log = logging.getLogger(__name__)

PINGED_TASKS = ("backup_db",)
PINGED_TRIGGERS = ("scheduled", "catch-up")
MAX_BODY = 10 * 1024
_RUN_NAMESPACE = uuid.UUID("6f1c1f7e-0c55-4b5e-9d0e-6d1f0b6b7a11")


def pinged(run: JobRun) -> bool:
    """Only scheduled backups ping: the outside service expects them on the schedule."""
    return run.task in PINGED_TASKS and run.trigger in PINGED_TRIGGERS


def run_uuid(run_id: int) -> str:
    """The ``rid`` of a run: the same UUID for its start and its end."""
    return str(uuid.uuid5(_RUN_NAMESPACE, f"run-{run_id}"))


def ping_start(config: Mapping, db: Database, run_id: int) -> None:
    """``<url>/start?rid=...``."""
    _ping(config, db, "/start", run_id, None)


def ping_end(config: Mapping, db: Database, run: JobRun) -> None:
    """``<url>?rid=...`` on success, ``<url>/fail?rid=...`` with the error as the body on failure.

    A run "success with warnings" (an off-site copy failed) pings ``/fail``: a copy that
    exists only on this host is what the ping is there to catch, also for a user who set
    a ping URL and no notification URL."""
    if run.status == "success":
        _ping(config, db, "", run.id, None)
    else:
        _ping(config, db, "/fail", run.id, (run.error or "failed").encode()[:MAX_BODY])


def _ping(config: Mapping, db: Database, suffix: str, run_id: int, body: bytes | None) -> None:
    from app.services.notification_sends import SendResult, record_sends
    from app.services.notification_settings import load_config

    url = load_config(db).ping_url
    if not url:
        return
    started, at = time.monotonic(), utcnow()
    request = urllib.request.Request(
        f"{url}{suffix}?rid={run_uuid(run_id)}", data=body, method="POST" if body else "GET"
    )
    if body is not None:
        request.add_header("Content-Type", "text/plain; charset=utf-8")
    error = None
    try:
        with urllib.request.urlopen(request, timeout=config["NOTIFY_TIMEOUT_SECONDS"]) as answer:
            answer.read(1024)
    except urllib.error.HTTPError as exc:
        error = f"HTTP {exc.code} {exc.reason}"
    except Exception as exc:  # refused, timed out, DNS: recorded, never raised
        error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    event = f"ping{suffix.replace('/', ':') or ':success'}"
    shown = mask_ping(url)
    if error is not None:
        error = error.replace(url, shown)
        log.warning("%s to %s failed: %s", event, shown, error)
    elapsed = round((time.monotonic() - started) * 1000)
    record_sends(db, [SendResult(shown, target_key(url), event, error is None, error, at, elapsed)])
