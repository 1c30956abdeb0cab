"""Settings routes: thin, each parses, calls a service and renders a page or partial."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from app.extensions import get_db
from app.models import utcnow
from app.services import retention, runs
from app.services.backup_checks import BackupCheckError
from app.services.backup_folder import folder_problem
from app.services.backup_tasks import start_restore_in_background
from app.services.backups import BackupError, BackupNotFound, list_backups, resolve_backup
from app.services.catalogue import catalogued_backups, delete_catalogued
from app.services.crontab import DST_RULE, DST_RULE_WILDCARD, NEVER_RUNS
from app.services.restore import preview_restore
from app.services.runner import TaskBusy, run_task_now, start_task_in_background
from app.services.schedules import ScheduleError, build_trigger, describe, load_schedule, next_fire_times, save_schedule
from app.services.sqlite_info import wal_reset_warning
from app.services.status import task_status
from app.services.uploads import accept_upload
from app.settings.forms import RestoreForm, ScheduleForm, UploadForm
from app.web import is_htmx, render_page_or_partial, staged_upload, zone_observes_dst

bp = Blueprint("settings", __name__, url_prefix="/settings")

BACKUP_TASK = "backup_db"
HISTORY_LIMIT = 20
PREVIEW_MODES = ("daily", "weekly", "cron", "interval")


def _backups_dir() -> Path:
    return Path(current_app.config["BACKUPS_DIR"])


# What each region needs; a poll of the status region computes only the status.
REGION_NEEDS = {
    "settings/_backups.html": ("folder_problem", "backups", "retention"),
    "settings/_schedule_status.html": ("status",),
    "settings/_schedule_history.html": ("folder_problem", "history"),
    "settings/_schedule_form.html": ("form",),
    "settings/_schedule_fields.html": ("form",),
}
PAGE_NEEDS = ("folder_problem", "backups", "retention", "form", "status", "history")
# Which form or action a toast answers: a newer toast of the same source replaces the older.
SCHEDULE_FORM, BACKUP_RUN, BACKUP_FILES, RETENTION = "schedule-form", "backup-run", "backup-files", "retention"


def _context(needs: tuple[str, ...], **overrides) -> dict:
    """The template context for ``needs``; values passed in ``overrides`` are not recomputed."""
    config = current_app.config
    db = get_db()
    makers = {
        "folder_problem": lambda: folder_problem(_backups_dir()),
        "backups": lambda: [] if context["folder_problem"] else catalogued_backups(db, _backups_dir()),
        "retention": lambda: {
            "keep_last": retention.keep_last(config, db, BACKUP_TASK),
            "keep_last_is_default": retention.is_default(db, BACKUP_TASK),
        },
        "form": lambda: ScheduleForm.from_schedule(load_schedule(db, BACKUP_TASK)[0]),
        "status": lambda: task_status(config, db, BACKUP_TASK),
        "history": lambda: {
            "history": runs.recent_runs(db, BACKUP_TASK, HISTORY_LIMIT),
            # Names in the history link to files that still exist and mark deleted ones.
            "existing_files": None
            if context["folder_problem"]
            else {backup.name for backup in list_backups(_backups_dir())},
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
        if name in ("retention", "history"):
            context.update({key: item for key, item in value.items() if key not in context})
        else:
            context[name] = value
    if "backups" in context:
        context.setdefault("upload_form", UploadForm())
    if "form" in context and "preview" not in context:
        context["preview"] = _preview(context["form"])
    return context


def _page_or_partial(partial: str, **overrides):
    """htmx: the region alone; plain browser: the full page that includes it."""
    needs = REGION_NEEDS[partial] if is_htmx() else PAGE_NEEDS
    return render_page_or_partial("settings/index.html", partial, **_context(needs, **overrides))


def _respond(
    partial: str,
    status: int = 200,
    message: tuple[str, str] | None = None,
    event: str | None = None,
    source: str | None = None,
    **ctx,
):
    """htmx: the partial plus a toast (replacing the last one from ``source``); plain browser:
    flash and redirect (or re-render on error)."""
    if is_htmx():
        body = render_template(partial, **_context(REGION_NEEDS[partial], **ctx))
        body += render_template("_oob_toast.html", toast=message, toast_source=source)
        response = current_app.response_class(body, status=status)
        if event:
            response.headers["HX-Trigger"] = event
        return response
    if status >= 400 and ("form" in ctx or "retention_error" in ctx or "upload_form" in ctx):
        page = render_template("settings/index.html", toast=message, toast_source=source, **_context(PAGE_NEEDS, **ctx))
        return page, status
    if message:
        flash(message[1], message[0])
    return redirect(url_for("settings.index"))


@bp.get("")
def index():
    """The Settings page with its "Database backup" and "Schedule" blocks."""
    return render_template("settings/index.html", **_context(PAGE_NEEDS))


@bp.get("/backups")
def backups():
    """The "Database backup" block alone (refreshed after a backup or delete)."""
    return _page_or_partial("settings/_backups.html")


@bp.post("/backups")
def backup_now():
    """ "Backup DB now": a manual backup in the background, like "Run backup now" (synchronous
    only when scheduling is off, as then no status region follows the run)."""
    config, db = current_app.config, get_db()
    if config["SCHEDULER_ENABLED"]:
        try:
            run = start_task_in_background(config, db, BACKUP_TASK)
        except TaskBusy as busy:
            return _respond("settings/_backups.html", 409, ("error", str(busy)), source=BACKUP_RUN)
        message = ("info", f"Backup started (run #{run.id}).")
        return _respond("settings/_backups.html", 202, message, "backup-started", source=BACKUP_RUN)
    try:
        outcome = run_task_now(config, db, BACKUP_TASK)
    except TaskBusy as busy:
        return _respond("settings/_backups.html", 409, ("error", str(busy)), source=BACKUP_RUN)
    if outcome.error is not None:
        message = ("error", f"Backup failed: {outcome.error}")
        return _respond("settings/_backups.html", 200, message, "backup-finished", source=BACKUP_RUN)
    message = ("success", f"Backup {outcome.result['file']} created and verified.")
    return _respond("settings/_backups.html", 200, message, "backup-finished", source=BACKUP_RUN)


@bp.get("/backups/<name>")
def download_backup(name: str):
    """Download one backup by its exact listed name."""
    try:
        path = resolve_backup(_backups_dir(), name)
    except BackupError:
        abort(404)
    return send_file(path, as_attachment=True, download_name=name, mimetype="application/vnd.sqlite3")


@bp.get("/backups/<name>/delete")
def confirm_delete_backup(name: str):
    """The confirmation page used when JavaScript is off."""
    try:
        resolve_backup(_backups_dir(), name)
    except BackupError:
        abort(404)
    return render_template("settings/confirm_delete.html", name=name)


@bp.post("/backups/<name>/delete")
def delete_backup_file(name: str):
    """Delete one backup; focus moves to the row that takes its place (or the empty message)."""
    names = [backup.name for backup in list_backups(_backups_dir())]
    try:
        delete_catalogued(get_db(), _backups_dir(), name)
    except BackupError:
        abort(404)
    rest = [other for other in names if other != name]
    index = names.index(name) if name in names else 0
    focus_after = rest[min(index, len(rest) - 1)] if rest else ""
    message = ("success", f"Backup {name} deleted.")
    return _respond(
        "settings/_backups.html", 200, message, "backups-deleted", source=BACKUP_FILES, focus_after=focus_after
    )


@bp.post("/retention")
def save_retention():
    """How many automatic backups to keep (stored beside the schedules)."""
    text = request.form.get("keep_last", "")
    try:
        value = retention.parse_keep_last(text)
    except retention.RetentionError as exc:
        message = ("error", f"Retention was not saved: {exc}")
        return _respond(
            "settings/_backups.html", 422, message, source=RETENTION, retention_error=str(exc), keep_last_input=text
        )
    retention.save_keep_last(get_db(), value, BACKUP_TASK)
    kept = "the newest automatic backup is" if value == 1 else f"the {value} newest automatic backups are"
    return _respond("settings/_backups.html", 200, ("success", f"Retention saved: {kept} kept."), source=RETENTION)


@bp.post("/backups/upload")
def upload_backup():
    """ "Upload backup": stream the file into the backup folder, check it, keep it (no restore yet)."""
    upload, staged = staged_upload("file")
    form = UploadForm(MultiDict({"file": upload}) if upload is not None else None)
    if not form.validate() or staged is None:
        return _upload_refused(form.file.errors[0] if form.file.errors else "Choose a backup file to upload.")
    try:
        backup = accept_upload(get_db(), _backups_dir(), staged)
    except BackupError as exc:
        return _upload_refused(f"{upload.filename}: {exc}")
    message = f"Uploaded {upload.filename} as {backup.name}: it passed every check. Restore it from the list."
    return _respond("settings/_backups.html", 201, ("success", message))


@bp.errorhandler(RequestEntityTooLarge)
def upload_too_large(error):
    """An upload over MAX_UPLOAD_MB (found while the body is read, maybe before the route runs)."""
    if request.endpoint != "settings.upload_backup":
        return error
    limit = current_app.config["MAX_UPLOAD_MB"]
    return _upload_refused(f"The file is larger than {limit} MB (MAX_UPLOAD_MB).", 413)


@bp.errorhandler(BackupError)
def upload_not_stored(error: BackupError):
    """The backup folder cannot hold an upload (raised while the body streams into it)."""
    if request.endpoint != "settings.upload_backup":
        raise error
    return _upload_refused(str(error))


def _upload_refused(reason: str, status: int = 422):
    form = UploadForm()
    form.file.errors = [reason]
    message = ("error", f"The upload was refused and nothing was kept: {reason}")
    return _respond("settings/_backups.html", status, message, upload_form=form)


@bp.get("/backups/<name>/restore")
def confirm_restore(name: str):
    """The restore confirmation page: what changes, and the name to type."""
    return _restore_page(name, RestoreForm(name=name))


@bp.post("/backups/<name>/restore")
def restore(name: str):
    """ "Restore this backup": check the typed name, then start the restore in the background."""
    form = RestoreForm(request.form, name=name)
    if not form.validate():
        return _restore_page(name, form, 422)
    try:
        run = start_restore_in_background(current_app.config, get_db(), name)
    except BackupNotFound:
        abort(404)
    except TaskBusy as busy:
        form.confirm.errors = [f"{busy} Wait for it to finish, then try again."]
        return _restore_page(name, form, 409)
    flash(
        f"Restoring {name} (run #{run.id}): a safety backup of the current data is taken first, "
        "so this restore can be undone.",
        "info",
    )
    return redirect(url_for("settings.index", _anchor="schedule-status"))


def _restore_page(name: str, form: RestoreForm, status: int = 200):
    try:
        preview = preview_restore(Path(current_app.config["DATABASE_PATH"]), _backups_dir(), name)
        problem = None
    except BackupNotFound:
        abort(404)
    except BackupCheckError as exc:
        preview, problem, status = None, str(exc), 400
    page = render_template("settings/confirm_restore.html", name=name, form=form, preview=preview, problem=problem)
    return page, status


@bp.get("/schedule/fields")
def schedule_fields():
    """The fields of the chosen strategy, keeping what the user typed (strategy switch)."""
    form = ScheduleForm(request.args)
    if form.mode.data not in ("disabled", "daily", "weekly", "cron", "interval"):
        form.mode.data = "disabled"
    return _page_or_partial("settings/_schedule_fields.html", form=form, preview=_preview(form))


@bp.get("/schedule/preview")
def schedule_preview():
    """The schedule help as you type: plain-English text and the next five runs, or the error."""
    form = ScheduleForm(request.args)
    return render_template("settings/_schedule_preview.html", preview=_preview(form), timezone=_timezone())


@bp.post("/schedule")
def save_schedule_form():
    """ "Save schedule": validate with the form; on error re-render with the input kept."""
    if not current_app.config["SCHEDULER_ENABLED"]:
        abort(404)
    form = ScheduleForm(request.form)
    if request.form.get("action") == "choose":
        # Without JavaScript, "Show fields for this strategy" re-renders; nothing is saved.
        return render_template("settings/index.html", **_context(PAGE_NEEDS, form=form))
    if not form.validate():
        message = ("error", "The schedule was not saved: correct the fields marked in the form.")
        return _respond(
            "settings/_schedule_form.html", 422, message, source=SCHEDULE_FORM, form=form, preview=_preview(form)
        )
    schedule = form.schedule()
    save_schedule(get_db(), BACKUP_TASK, schedule)
    message = ("success", f"Schedule saved: {describe(schedule).rstrip('.')}.")
    return _respond("settings/_schedule_form.html", 200, message, "schedule-changed", source=SCHEDULE_FORM)


@bp.get("/schedule/status")
def schedule_status():
    """The polled status region."""
    return _page_or_partial("settings/_schedule_status.html")


@bp.get("/schedule/history")
def schedule_history():
    """The run history table."""
    return _page_or_partial("settings/_schedule_history.html")


@bp.post("/schedule/run")
def run_backup_now():
    """ "Run backup now": start a backup in the background and answer at once."""
    if not current_app.config["SCHEDULER_ENABLED"]:
        abort(404)
    try:
        run = start_task_in_background(current_app.config, get_db(), BACKUP_TASK)
    except TaskBusy as busy:
        return _respond("settings/_schedule_status.html", 409, ("error", str(busy)), source=BACKUP_RUN)
    message = ("info", f"Backup started (run #{run.id}).")
    return _respond("settings/_schedule_status.html", 202, message, "backup-started", source=BACKUP_RUN)


def _timezone() -> str:
    return current_app.config["SCHEDULER_TIMEZONE"]


def _preview(form: ScheduleForm) -> dict | None:
    """What the form's (unsaved) schedule means: description and next five runs, or its error."""
    mode = form.mode.data
    if mode not in PREVIEW_MODES:
        return None
    if mode == "cron" and not (form.cron.data or "").strip():
        return {"error": None, "description": None, "upcoming": []}
    try:
        schedule = form.schedule()
        trigger = build_trigger(schedule, _timezone())
    except ScheduleError as exc:
        return {"error": str(exc), "description": None, "upcoming": []}
    if mode == "interval":
        # Elapsed time from the save: the real next run is the status's, not a guess from now.
        return {"error": None, "description": describe(schedule), "upcoming": []}
    now = utcnow()
    upcoming = next_fire_times(trigger, 5, now)
    if not upcoming:
        return {"error": NEVER_RUNS, "description": None, "upcoming": []}
    # Asked again once the first listed run has passed (capped: a timer of days is pointless).
    refresh_after = min(math.ceil((upcoming[0] - now).total_seconds()) + 1, 24 * 3600)
    return {"error": None, "description": describe(schedule), "upcoming": upcoming, "refresh_after": refresh_after}
