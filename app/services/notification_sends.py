"""Sending one message to every notification URL, each bounded by NOTIFY_TIMEOUT_SECONDS, and keeping the results."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select

from app.db import Database
from app.models import NotificationSend, utcnow
from app.services.notification_settings import NotificationConfig
from app.services.notification_urls import Scrubber, instantiate, mask, target_key

log = logging.getLogger(__name__)

KEEP_SENDS = 1000
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class SendResult:
    """How one send to one URL went (``target`` is the masked URL)."""

    target: str
    target_key: str
    event: str
    ok: bool
    error: str | None
    at: datetime
    elapsed_ms: int


def send_to_all(config: Mapping, db: Database, settings: NotificationConfig, event: str, title: str, body: str):
    """Send one message to every URL at once (each bounded by NOTIFY_TIMEOUT_SECONDS); record and return results."""
    if not settings.urls:
        return []
    with ThreadPoolExecutor(max_workers=len(settings.urls), thread_name_prefix="notify-send") as pool:
        results = list(pool.map(lambda url: _send_one(config, url, event, title, body), settings.urls))
    record_sends(db, results)
    for result in results:
        if result.ok:
            log.info("notification %s sent to %s in %d ms", event, result.target, result.elapsed_ms)
        else:
            log.warning("notification %s to %s failed: %s", event, result.target, result.error)
    return results


def _send_one(config: Mapping, url: str, event: str, title: str, body: str) -> SendResult:
    import apprise

    started, at = time.monotonic(), utcnow()
    shown = mask(url)
    scrub = Scrubber.for_urls([url], [shown])
    timeout = float(config["NOTIFY_TIMEOUT_SECONDS"])
    error = None
    try:
        service = instantiate(url)
        if service is None:
            raise RuntimeError("Apprise no longer accepts this URL.")
        # A little over the call's own limit, so the error says "did not finish within"; its thread ends soon after.
        service.socket_connect_timeout = service.socket_read_timeout = timeout + 1
        sender = apprise.Apprise()
        sender.add(service)
        kind = _notify_types().get(event, apprise.NotifyType.INFO)
        result = sender.notify(body=body, title=title, notify_type=kind, timeout=timeout)
        if not result:
            messages = [entry.message for entry in result.logs() if _is_reason(entry)]
            error = " ".join(messages) or "The service did not accept the message."
    except Exception as exc:  # a notification must never fail what sent it
        error = f"{type(exc).__name__}: {exc}"
    elapsed = round((time.monotonic() - started) * 1000)
    error = scrub(error)[:MAX_ERROR_CHARS] if error else None
    return SendResult(shown, target_key(url), event, error is None, error, at, elapsed)


def _is_reason(entry) -> bool:
    """Apprise's warnings and errors, and the socket error it logs only at debug level."""
    return entry.level in ("ERROR", "WARNING") or entry.message.startswith("Socket Exception:")


def record_sends(db: Database, results: list[SendResult]) -> None:
    """Keep each send's result (the newest per URL is shown); old rows are pruned."""
    if not results:
        return
    try:
        with db.writer() as session:
            for result in results:
                session.add(
                    NotificationSend(
                        at=result.at,
                        target_key=result.target_key,
                        target=result.target,
                        event=result.event,
                        ok=result.ok,
                        error=result.error,
                        elapsed_ms=result.elapsed_ms,
                    )
                )
            session.flush()
            newest = session.scalar(select(func.max(NotificationSend.id))) or 0
            session.execute(delete(NotificationSend).where(NotificationSend.id <= newest - KEEP_SENDS))
    except Exception:
        log.exception("could not record %d notification result(s)", len(results))


def _notify_types():
    import apprise

    return {
        "run_failed": apprise.NotifyType.FAILURE,
        "verification_failed": apprise.NotifyType.FAILURE,
        "offsite_failed": apprise.NotifyType.FAILURE,
        "stale": apprise.NotifyType.WARNING,
        "recovered": apprise.NotifyType.SUCCESS,
        "restore_done": apprise.NotifyType.SUCCESS,
        "success": apprise.NotifyType.SUCCESS,
    }


def in_background(work: Callable, *args) -> None:
    """Run ``work(*args)`` off the caller's path; errors are logged, never raised.

    Not a daemon thread: a CLI command that ends right after a run still delivers its
    message (each send is bounded by NOTIFY_TIMEOUT_SECONDS).
    """

    def guarded() -> None:
        try:
            work(*args)
        except Exception:
            log.exception("notification work %s failed", getattr(work, "__name__", work))

    try:
        threading.Thread(target=guarded, name="notify", daemon=False).start()
    except Exception:  # e.g. no more threads: the run must still end normally
        log.exception("could not start notification work %s", getattr(work, "__name__", work))
