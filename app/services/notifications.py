"""Notifications: which events send one, the state that makes them once-per-change, and the sends.

Hooks (each returns at once and never raises; the work runs in a background thread of the
calling process, so a slow or hanging receiver never delays or fails a run):

- :func:`run_started` / :func:`run_finished`: called by ``app.tasks`` around every run;
- :func:`leader_tick`: called by the scheduler leader every second, checks once a minute for
  stale tasks and due reminders (only the leader calls it, so followers never send);
- :func:`offsite_upload_failed` / :func:`offsite_upload_succeeded`: after each off-site upload.

A subject (a task, its restores, an off-site target) is ``ok``, ``failing`` or ``stale`` in
``notification_state``. The process whose write transaction changes that state sends the
message, so a change is told once however many processes see it; while it lasts, a
reminder goes out every ``NOTIFY_REMIND_HOURS``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from app.db import Database
from app.models import JobRun, NotificationState, utcnow
from app.services import pings
from app.services.notification_sends import SendResult, in_background, send_to_all
from app.services.notification_settings import NotificationConfig, load_config
from app.services.registry import TASKS
from app.services.staleness import task_staleness

log = logging.getLogger(__name__)

# A failed run of these tasks is this event rather than "run_failed".
FAILURE_EVENT_OF_TASK = {"verify_backups": "verification_failed"}
CHECK_EVERY_SECONDS = 60.0

_last_check: dict[str, float] = {}
_check_lock = threading.Lock()


def send_test(config: Mapping, db: Database) -> list[SendResult]:
    """ "Send test notification": one message to every saved URL, now; one result per URL."""
    settings = load_config(db)
    title = "Backups: test notification"
    body = _body(config, "This is a test message from the backups app. Notifications reach you here.", utcnow())
    return send_to_all(config, db, settings, "test", title, body)


# -- what happened -> what is sent ----------------------------------------------------


def clock(config: Mapping) -> datetime:
    """Now, or the test's clock (``NOTIFY_CLOCK``): reminders are tested without waiting hours."""
    return config.get("NOTIFY_CLOCK", utcnow)()


@dataclass(frozen=True)
class Change:
    """What a state update means: "new", "remind" or "recovered", with the state before it."""

    kind: str
    event: str | None
    since: datetime | None
    error: str | None


def advance(
    db: Database,
    subject: str,
    condition: str,
    now: datetime,
    remind: timedelta,
    event: str | None = None,
    error: str | None = None,
    run_id: int | None = None,
) -> Change | None:
    """Move ``subject`` to ``condition`` (failing, stale, ok, or ok-silent) in one write transaction.

    Returns what to tell, or None: nothing changed, or a reminder is not due yet, or
    this run is older than one already counted.
    """
    with db.writer() as session:
        row = session.get(NotificationState, subject)
        if row is None:
            row = NotificationState(subject=subject, state="ok")
            session.add(row)
        if run_id is not None:
            if row.last_run_id is not None and run_id <= row.last_run_id:
                return None
            row.last_run_id = run_id
        before = Change("", row.event, row.since, row.last_error)
        if condition in ("failing", "stale"):
            if row.state == "ok" or (row.state == "stale" and condition == "failing"):
                row.state, row.event, row.since, row.notified_at, row.last_error = condition, event, now, now, error
                return Change("new", event, now, error)
            if row.state == "failing" and condition == "stale":
                return None  # already told: a failing task is also stale in time
            row.last_error = error or row.last_error
            if row.notified_at is None or now - row.notified_at >= remind:
                row.notified_at = now
                return Change("remind", row.event, row.since, row.last_error)
            return None
        was_bad = row.state != "ok"
        row.state, row.event, row.since, row.notified_at, row.last_error = "ok", None, None, None, None
        if was_bad and condition == "ok":
            return Change("recovered", before.event, before.since, before.error)
        return None


def run_started(config: Mapping, db: Database, run: JobRun) -> None:
    """A run was claimed: ping ``<url>/start`` for a scheduled backup (in the background)."""
    if pings.pinged(run):
        in_background(pings.ping_start, config, db, run.id)


def run_finished(config: Mapping, db: Database, run_id: int) -> None:
    """A run ended (its outcome is recorded): notify and ping in the background, if anything is configured.

    The check is one quick read here (WAL readers never wait for writers), so an
    unconfigured app starts no thread and holds no connection after the run.
    """
    try:
        settings = load_config(db)
    except Exception:
        log.exception("run %d: notification settings not readable; nothing sent", run_id)
        return
    if settings.urls or settings.ping_url:
        in_background(_run_finished, config, db, run_id)


def _run_finished(config: Mapping, db: Database, run_id: int) -> None:
    from app.services import runs

    run = runs.get_run(db, run_id)
    if run is None or run.status not in ("success", "warning", "failed"):
        return
    if pings.pinged(run):
        in_background(pings.ping_end, config, db, run)
    settings = load_config(db)
    if not settings.urls:
        return  # nothing to tell anyone: the first failure after URLs are saved is then news
    now = clock(config)
    remind = timedelta(hours=config["NOTIFY_REMIND_HOURS"])
    title = _task_title(run.task)
    if run.trigger == "restore":
        subject = f"{run.task}:restore"
        if run.status == "success":
            advance(db, subject, "ok-silent", now, remind, run_id=run.id)
            what = f"{title}: restore of {run.file} finished (run #{run.id}). {run.detail or ''}".strip()
            _tell(config, db, settings, "restore_done", f"Backups: restore finished ({run.file})", what, now)
            return
        change = advance(db, subject, "failing", now, remind, "run_failed", run.error, run.id)
        what = f"{title}: restore failed (run #{run.id})."
        _tell_change(config, db, settings, change, "Backups: restore failed", what, now)
        return
    if run.status == "failed":
        event = FAILURE_EVENT_OF_TASK.get(run.task, "run_failed")
        change = advance(db, run.task, "failing", now, remind, event, run.error, run.id)
        what = f"{title} failed ({run.trigger} run #{run.id})."
        _tell_change(config, db, settings, change, f"Backups: {title} failed", what, now)
        return
    change = advance(db, run.task, "ok", now, remind, run_id=run.id)
    if change is not None:
        what = f"{title} works again: run #{run.id} succeeded{_file(run)}{_warned(run)}."
        _tell_change(config, db, settings, change, f"Backups: {title} recovered", what, now)
    if settings.wants("success"):
        what = f"{title} succeeded ({run.trigger} run #{run.id}){_file(run)}{_warned(run)}."
        _tell(config, db, settings, "success", f"Backups: {title} succeeded", what, now)


def _warned(run: JobRun) -> str:
    """A run "success with warnings" says so (its off-site failures are told on their own)."""
    return " with warnings (an off-site copy failed)" if run.status == "warning" else ""


def offsite_upload_failed(config: Mapping, db: Database, target: str, error: str) -> None:
    """An off-site copy to ``target`` failed (hook for the off-site feature): notify in the background."""

    def work() -> None:
        now = clock(config)
        remind = timedelta(hours=config["NOTIFY_REMIND_HOURS"])
        change = advance(db, f"offsite:{target}", "failing", now, remind, "offsite_failed", error)
        what = f"The off-site upload to {target} failed."
        _tell_change(config, db, load_config(db), change, f"Backups: off-site upload to {target} failed", what, now)

    in_background(work)


def offsite_upload_succeeded(config: Mapping, db: Database, target: str) -> None:
    """An off-site copy to ``target`` was uploaded and verified: tell "recovered" if it was failing."""

    def work() -> None:
        now = clock(config)
        remind = timedelta(hours=config["NOTIFY_REMIND_HOURS"])
        change = advance(db, f"offsite:{target}", "ok", now, remind)
        if change is not None:
            what = f"Off-site copies to {target} work again: the last upload was verified."
            _tell_change(
                config, db, load_config(db), change, f"Backups: off-site upload to {target} recovered", what, now
            )

    in_background(work)


def leader_tick(config: Mapping, db: Database) -> None:
    """Called by the leader every second; once a minute, check stale tasks and reminders in the background."""
    key = db.identity
    with _check_lock:
        now = time.monotonic()
        if now - _last_check.get(key, -CHECK_EVERY_SECONDS) < CHECK_EVERY_SECONDS:
            return
        _last_check[key] = now
    in_background(check_stale_and_reminders, config, db)


def check_stale_and_reminders(config: Mapping, db: Database) -> None:
    """Tell of tasks that became stale (or still are: reminders), and of failures still lasting."""

    settings = load_config(db)
    if not settings.urls:
        return
    now = clock(config)
    remind = timedelta(hours=config["NOTIFY_REMIND_HOURS"])
    zone = config["SCHEDULER_TIMEZONE"]
    for task_id in TASKS:
        staleness = task_staleness(db, task_id, zone, now)
        title = _task_title(task_id)
        if staleness.stale:
            hours = _span(2 * staleness.period)
            last = _when(config, staleness.last_success.finished_at) if staleness.last_success else "never"
            error = f"No successful run for longer than twice the schedule's period ({hours}); last success: {last}."
            change = advance(db, task_id, "stale", now, remind, "stale", error)
            _tell_change(config, db, settings, change, f"Backups: {title} is stale", f"{title} is stale.", now)
        elif _state_of(db, task_id) == "stale":
            advance(db, task_id, "ok-silent", now, remind)  # e.g. the schedule was disabled: nothing to tell
    with db.session() as session:
        failing = list(session.scalars(select(NotificationState).where(NotificationState.state == "failing")))
    for row in failing:
        if row.subject.endswith(":restore"):
            continue  # a restore is a one-off action: its failure is told once, not reminded
        if row.notified_at is not None and now - row.notified_at < remind:
            continue
        change = advance(db, row.subject, "failing", now, remind, row.event, None)
        name = _subject_title(row.subject)
        _tell_change(config, db, settings, change, f"Backups: {name} still failing", f"{name} is still failing.", now)


def _state_of(db: Database, subject: str) -> str:
    with db.session() as session:
        row = session.get(NotificationState, subject)
    return row.state if row else "ok"


def _tell_change(config, db, settings, change: Change | None, title: str, what: str, now: datetime) -> None:
    if change is None:
        return
    if change.kind == "recovered":
        body = f"{what}\nIt had been failing since {_when(config, change.since)}; last error: {change.error or '-'}"
        _tell(config, db, settings, "recovered", title, body, now)
        return
    if change.kind == "remind":
        title = f"Reminder: {title}"
        what = f"{what} Still so since {_when(config, change.since)}."
    _tell(config, db, settings, change.event, title, what, now, error=change.error)


def _tell(config, db, settings: NotificationConfig, event: str, title: str, what: str, now: datetime, error=None):
    if not settings.wants(event):
        return
    send_to_all(config, db, settings, event, title, _body(config, what, now, error))


def _body(config: Mapping, what: str, now: datetime, error: str | None = None) -> str:
    """What happened, when (with the zone), the error, and where to look."""
    lines = [what, f"When: {_when(config, now)}", f"Host: {socket.gethostname()}"]
    if error:
        lines.append(f"Error: {error}")
    public = config.get("PUBLIC_URL")
    lines.append(
        f"Settings: {public}/settings" if public else "Settings: /settings on this server (set PUBLIC_URL for a link)"
    )
    return "\n".join(lines)


def _when(config: Mapping, moment: datetime | None) -> str:
    if moment is None:
        return "-"
    zone_name = config["SCHEDULER_TIMEZONE"]
    local = moment.astimezone(UTC).astimezone(ZoneInfo(zone_name))
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({zone_name})"


def _span(period: timedelta) -> str:
    minutes = period.total_seconds() / 60
    return f"{minutes:g} min" if minutes < 120 else f"{minutes / 60:g} h"


def _file(run: JobRun) -> str:
    return f", {run.file}" if run.file else ""


def _task_title(task_id: str) -> str:

    task = TASKS.get(task_id)
    return task.title if task else task_id


def _subject_title(subject: str) -> str:
    if subject.startswith("offsite:"):
        return f"Off-site upload to {subject.removeprefix('offsite:')}"
    if subject.endswith(":restore"):
        return f"{_task_title(subject.removesuffix(':restore'))} restore"
    return _task_title(subject)
