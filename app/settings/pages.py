"""The Settings page's blueprint and how its pages and partials are rendered.

Every region of the page is one partial, rendered inside the full page and alone as the
htmx answer. :func:`page_context` computes only what the regions asked for need; the
Schedule block has one section per registered task (:func:`task_view`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flask import Blueprint, current_app, flash, redirect, render_template, session, url_for

from app.extensions import get_db
from app.forms.schedule import ScheduleForm
from app.models import utcnow
from app.services import retention, runs
from app.services.backup_folder import folder_problem
from app.services.backup_tasks import BACKUP_TASK
from app.services.backups import list_backups
from app.services.catalogue import listed_backups
from app.services.crontab import DST_RULE, DST_RULE_WILDCARD
from app.services.registry import TASKS, Task
from app.services.schedules import MODE_FIELDS, ScheduleError, load_schedule, preview
from app.services.sqlite_info import wal_reset_warning
from app.services.status import poll_state, task_status
from app.settings.forms import UploadForm
from app.web import is_htmx, render_page_or_partial, zone_observes_dst

bp = Blueprint("settings", __name__, url_prefix="/settings")

HISTORY_LIMIT = 20

# What each region needs; a poll of the status computes only the status.
REGION_NEEDS = {
    "settings/_backups.html": ("folder_problem", "backups", "retention"),
}
PAGE_NEEDS = ("folder_problem", "backups", "retention", "tasks")
# Which form or action a toast answers: a newer toast of the same source replaces the older.
BACKUP_RUN, BACKUP_FILES, RETENTION = "run-backup_db", "backup-files", "retention"


def run_toast_order(run_id: int, finished: bool) -> int:
    """The rank of a run's toast: a run's end outranks its start, a later run both."""
    return run_id * 2 + int(finished)


def backups_dir() -> Path:
    return Path(current_app.config["BACKUPS_DIR"])


def timezone() -> str:
    return current_app.config["SCHEDULER_TIMEZONE"]


def existing_files() -> set[str] | None:
    """Names of the backups in the folder (None when it cannot be read): history links them."""
    return None if folder_problem(backups_dir()) else {backup.name for backup in list_backups(backups_dir())}


def task_view(task: Task, needs=("form", "status", "history"), form: ScheduleForm | None = None) -> dict:
    """What one task's section shows: its form (and preview), its status, its history."""
    config, db = current_app.config, get_db()
    view: dict = {"task": task}
    if "form" in needs:
        view["form"] = form or ScheduleForm.from_schedule(load_schedule(db, task.id)[0], task.id)
        view["preview"] = form_preview(view["form"])
    if "status" in needs:
        view["status"] = task_status(config, db, task.id)
    if "history" in needs:
        view["history"] = runs.recent_runs(db, task.id, HISTORY_LIMIT)
    return view


def form_preview(form: ScheduleForm) -> dict | None:
    """What the form's (unsaved) schedule means, or its error (None for "Disabled")."""
    mode = form.mode.data
    if not MODE_FIELDS.get(mode):  # "Disabled" (or unknown) has nothing to preview
        return None
    if mode == "cron" and not (form.cron.data or "").strip():
        return {"error": None, "description": None, "upcoming": []}
    try:
        return preview(form.schedule(), timezone(), utcnow())
    except ScheduleError as exc:
        return {"error": str(exc), "description": None, "upcoming": []}


def page_context(needs: tuple[str, ...], **overrides) -> dict:
    """The template context for ``needs``; values passed in ``overrides`` are not recomputed.

    ``task_forms`` ({task id: form}) keeps what a user typed in one section after an error.
    """
    config = current_app.config
    db = get_db()
    task_forms = overrides.pop("task_forms", {})
    makers = {
        "folder_problem": lambda: folder_problem(backups_dir()),
        "backups": lambda: [] if context["folder_problem"] else listed_backups(db, backups_dir(), config["HOST_NAME"]),
        "retention": lambda: {
            "keep_last": retention.keep_last(config, db, BACKUP_TASK),
            "keep_last_is_default": retention.is_default(db, BACKUP_TASK),
        },
        "tasks": lambda: {
            "tasks": [task_view(task, form=task_forms.get(task.id)) for task in TASKS.values()],
            "existing_files": existing_files(),
        },
    }
    context = {
        "backups_dir": config["BACKUPS_DIR"],
        "max_upload_mb": config["MAX_UPLOAD_MB"],
        "scheduler_enabled": config["SCHEDULER_ENABLED"],
        "timezone": config["SCHEDULER_TIMEZONE"],
        "dst_rule": DST_RULE,
        "dst_rule_wildcard": DST_RULE_WILDCARD,
        "zone_has_dst": zone_observes_dst(config["SCHEDULER_TIMEZONE"]),
        "sqlite_version": sqlite3.sqlite_version,
        "sqlite_warning": wal_reset_warning(),
        **overrides,
    }
    for name in needs:
        if name in context:
            continue
        value = makers[name]()
        if name in ("retention", "tasks"):
            context.update({key: item for key, item in value.items() if key not in context})
        else:
            context[name] = value
    if "backups" in context:
        context.setdefault("upload_form", UploadForm())
    if "tasks" in context:
        _finished, after, running = poll_state(db, runs.newest_run_id(db), set())
        # A page opened right after starting a run (a restore's redirect) announces it even
        # if it ended first; the id travels once, in the session, so a reload does not repeat it.
        started = session.pop("watch_runs", []) if "watch_runs" in session else []
        context.setdefault("poll", {"after": after, "watch": sorted(set(running + started))})
        context.setdefault("any_running", any(view["status"].running for view in context["tasks"]))
    return context


def page_or_partial(partial: str, **overrides):
    """htmx: the region alone; plain browser: the full page that includes it."""
    needs = REGION_NEEDS[partial] if is_htmx() else PAGE_NEEDS
    return render_page_or_partial("settings/index.html", partial, **page_context(needs, **overrides))


def respond(
    partial: str,
    status: int = 200,
    message: tuple[str, str] | None = None,
    event: str | None = None,
    source: str | None = None,
    order: int | None = None,
    **ctx,
):
    """htmx: the partial plus a toast (replacing the last one from ``source``); plain browser:
    flash and redirect (or re-render on error).

    ``order`` ranks toasts of one source whose answers can arrive out of order (a run's
    "started" and the poll's "finished"): the page keeps the highest, not the last to arrive.
    """
    if is_htmx():
        context = ctx if "view" in ctx else page_context(REGION_NEEDS.get(partial, ()), **ctx)
        body = render_template(partial, **{**base_context(), **context})
        body += render_template("_oob_toast.html", toast=message, toast_source=source, toast_order=order)
        response = current_app.response_class(body, status=status)
        if event:
            response.headers["HX-Trigger"] = event
        return response
    if status >= 400 and ({"task_forms", "retention_error", "upload_form"} & ctx.keys()):
        page = render_template(
            "settings/index.html", toast=message, toast_source=source, **page_context(PAGE_NEEDS, **ctx)
        )
        return page, status
    if message:
        flash(message[1], message[0])
    return redirect(url_for("settings.index"))


def base_context() -> dict:
    """What every partial may use (zone, DST rule), without any database work."""
    config = current_app.config
    return {
        "timezone": config["SCHEDULER_TIMEZONE"],
        "scheduler_enabled": config["SCHEDULER_ENABLED"],
        "dst_rule": DST_RULE,
        "dst_rule_wildcard": DST_RULE_WILDCARD,
        "zone_has_dst": zone_observes_dst(config["SCHEDULER_TIMEZONE"]),
    }
