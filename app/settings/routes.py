"""The Settings page, the "Database backup" block (backups, uploads, restores) and retention."""

from __future__ import annotations

from pathlib import Path

from flask import current_app, flash, redirect, render_template, request, session, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from app.extensions import get_db
from app.services import retention
from app.services.backup_tasks import BACKUP_TASK, start_restore_in_background
from app.services.backups import BackupError, BackupNotFound, list_backups, resolve_backup
from app.services.catalogue import delete_catalogued
from app.services.pg_backups import preview_pg_restore
from app.services.restore import preview_restore
from app.services.runner import TaskBusy, run_task_now, start_task_in_background
from app.services.uploads import accept_upload
from app.settings.forms import RestoreForm, UploadForm
from app.settings.pages import (
    BACKUP_FILES,
    BACKUP_RUN,
    PAGE_NEEDS,
    RETENTION,
    backups_dir,
    bp,
    page_context,
    page_or_partial,
    respond,
    run_toast_order,
)
from app.web import abort_backup_not_here, send_backup, staged_upload


@bp.get("")
def index():
    """The Settings page with its "Database backup" and "Schedule" blocks."""
    return render_template("settings/index.html", **page_context(PAGE_NEEDS))


@bp.get("/backups")
def backups():
    """The "Database backup" block alone (refreshed after a backup or delete)."""
    return page_or_partial("settings/_backups.html")


@bp.post("/backups")
def backup_now():
    """ "Backup DB now": a manual backup in the background, like "Run backup now" (synchronous
    only when scheduling is off, as then no status region follows the run)."""
    config, db = current_app.config, get_db()
    if config["SCHEDULER_ENABLED"]:
        try:
            run = start_task_in_background(config, db, BACKUP_TASK)
        except TaskBusy as busy:
            return respond("settings/_backups.html", 409, ("error", str(busy)), source=BACKUP_RUN)
        message = ("info", f"Backup started (run #{run.id}).")
        order = run_toast_order(run.id, finished=False)
        return respond("settings/_backups.html", 202, message, "run-started", source=BACKUP_RUN, order=order)
    try:
        outcome = run_task_now(config, db, BACKUP_TASK)
    except TaskBusy as busy:
        return respond("settings/_backups.html", 409, ("error", str(busy)), source=BACKUP_RUN)
    if outcome.error is not None:
        message = ("error", f"Backup failed: {outcome.error}")
        return respond("settings/_backups.html", 200, message, "runs-finished", source=BACKUP_RUN)
    if outcome.result.get("warnings"):
        text = f"Backup {outcome.result['file']} created and verified here, with warnings: {outcome.run.detail}"
        return respond("settings/_backups.html", 200, ("error", text), "runs-finished", source=BACKUP_RUN)
    message = ("success", f"Backup {outcome.result['file']} created and verified.")
    return respond("settings/_backups.html", 200, message, "runs-finished", source=BACKUP_RUN)


@bp.get("/backups/<name>")
def download_backup(name: str):
    """Download one backup by its exact listed name (404 naming its host when it is on another)."""
    return send_backup(backups_dir(), name)


@bp.get("/backups/<name>/delete")
def confirm_delete_backup(name: str):
    """The confirmation page used when JavaScript is off."""
    try:
        resolve_backup(backups_dir(), name)
    except BackupError:
        abort_backup_not_here(backups_dir(), name)
    return render_template("settings/confirm_delete.html", name=name)


@bp.post("/backups/<name>/delete")
def delete_backup_file(name: str):
    """Delete one backup; focus moves to the row that takes its place (or the empty message)."""
    names = [backup.name for backup in list_backups(backups_dir())]
    try:
        delete_catalogued(get_db(), backups_dir(), name, current_app.config["HOST_NAME"])
    except BackupError:
        abort_backup_not_here(backups_dir(), name)
    rest = [other for other in names if other != name]
    index = names.index(name) if name in names else 0
    focus_after = rest[min(index, len(rest) - 1)] if rest else ""
    message = ("success", f"Backup {name} deleted.")
    return respond(
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
        return respond(
            "settings/_backups.html", 422, message, source=RETENTION, retention_error=str(exc), keep_last_input=text
        )
    retention.save_keep_last(get_db(), value, BACKUP_TASK)
    kept = "the newest automatic backup is" if value == 1 else f"the {value} newest automatic backups are"
    return respond("settings/_backups.html", 200, ("success", f"Retention saved: {kept} kept."), source=RETENTION)


@bp.post("/backups/upload")
def upload_backup():
    """ "Upload backup": stream the file into the backup folder, check it, keep it (no restore yet)."""
    upload, staged = staged_upload("file")
    form = UploadForm(MultiDict({"file": upload}) if upload is not None else None)
    if not form.validate() or staged is None:
        return _upload_refused(form.file.errors[0] if form.file.errors else "Choose a backup file to upload.")
    try:
        backup = accept_upload(get_db(), backups_dir(), staged, current_app.config["HOST_NAME"])
    except BackupError as exc:
        return _upload_refused(f"{upload.filename}: {exc}")
    message = f"Uploaded {upload.filename} as {backup.name}: it passed every check. Restore it from the list."
    return respond("settings/_backups.html", 201, ("success", message))


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
    return respond("settings/_backups.html", status, message, upload_form=form)


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
        abort_backup_not_here(backups_dir(), name)
    except TaskBusy as busy:
        form.confirm.errors = [f"{busy} Wait for it to finish, then try again."]
        return _restore_page(name, form, 409)
    flash(
        f"Restoring {name} (run #{run.id}): a safety backup of the current data is taken first, "
        "so this restore can be undone.",
        "info",
    )
    session["watch_runs"] = [run.id]  # the next page announces this run once, even if it ends first
    return redirect(url_for("settings.index", _anchor="status-backup_db"))


def _restore_page(name: str, form: RestoreForm, status: int = 200):
    config = current_app.config
    try:
        if config["DATABASE_PATH"] is None:  # PostgreSQL data: the dump's tables against the live ones
            preview = preview_pg_restore(config["DATABASE_URL"], backups_dir(), name)
        else:
            preview = preview_restore(Path(config["DATABASE_PATH"]), backups_dir(), name)
        problem = None
    except BackupNotFound:
        abort_backup_not_here(backups_dir(), name)
    except BackupError as exc:  # unreadable, the wrong kind, or the database out of reach
        preview, problem, status = None, str(exc), exc.status_code
    page = render_template("settings/confirm_restore.html", name=name, form=form, preview=preview, problem=problem)
    return page, status
