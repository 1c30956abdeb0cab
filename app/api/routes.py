"""JSON API routes (DESIGN.md section 6); errors are ``{"error": msg}`` or ``{"errors": {...}}``."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge

from app.api.serializers import backup_json, busy_json, health_json, iso, job_json, run_json
from app.extensions import csrf, get_db
from app.forms.schedule import ScheduleForm, formdata_from_json
from app.services import runs
from app.services.backup_tasks import BACKUP_TASK, start_restore_in_background
from app.services.backups import BackupError, BackupNotFound
from app.services.catalogue import catalogued_backup, catalogued_backups, delete_catalogued, listed_backups
from app.services.registry import TASKS, Task, task_named
from app.services.runner import TaskBusy, run_task_now, start_task_in_background
from app.services.scheduler import ENTRY_POINT
from app.services.schedules import Schedule, save_schedule
from app.services.status import scheduler_health, stored_jobs, task_status
from app.services.uploads import accept_upload
from app.web import abort_backup_not_here, send_backup, staged_upload

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def guard_browser_requests():
    """Refuse other sites' requests; a call authenticated by the session cookie needs the CSRF token.

    Browsers say where a request comes from (Sec-Fetch-Site). Calls with a bearer token
    are not sent by browsers on their own, so they need no CSRF token.
    """
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return jsonify(error="Cross-site requests are not allowed."), 403
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        # Browsers without Fetch Metadata still send Origin on cross-site POSTs.
        return jsonify(error="Cross-site requests are not allowed."), 403
    if g.get("auth") == "session" and request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()
    return None


@bp.errorhandler(404)
def not_found(error: NotFound):
    # A 404 raised with its own description (e.g. "This backup is on host X ...") says it.
    custom = error.description != NotFound.description
    return jsonify(error=error.description if custom else "Not found."), 404


@bp.app_errorhandler(HTTPException)
def errors_as_json(error: HTTPException):
    """JSON for every HTTP error under /api/v1, also those raised before a view is chosen.

    A wrong method, an unknown URL or a body over MAX_CONTENT_LENGTH fail during routing,
    where blueprint handlers are never consulted; other paths keep Flask's own answer.
    """
    if error.code is None or error.code < 400 or not request.path.startswith(f"{bp.url_prefix}/"):
        return error
    headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
    return jsonify(error=error.description), error.code, headers


def _require_scheduler() -> None:
    if not current_app.config["SCHEDULER_ENABLED"]:
        abort(404)


def _timezone() -> str:
    return current_app.config["SCHEDULER_TIMEZONE"]


def _json_body():
    """The parsed JSON body, or None when it is not valid JSON."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        # json.loads recurses per nesting level: "[[[[..." within MAX_CONTENT_LENGTH would be a 500.
        return None


@bp.post("/settings/backup-db")
def backup_db():
    """A manual backup, synchronously: 200 with the backup, or an error with a fitting status."""
    try:
        outcome = run_task_now(current_app.config, get_db(), BACKUP_TASK)
    except TaskBusy as busy:
        return jsonify(error=str(busy), running=busy_json(busy.running, BACKUP_TASK, _timezone())), 409
    if outcome.error is not None:
        return jsonify(error=str(outcome.error), run=run_json(outcome.run, _timezone())), outcome.error.status_code
    made = outcome.result["backup"]
    entry = catalogued_backup(get_db(), _backups_dir(), made.name)
    # "warning": the backup is made and verified, an off-site copy was not (``warnings`` says which).
    extra = {
        "duration_ms": made.duration_ms,
        "run_id": outcome.run.id,
        "status": outcome.run.status,
        "warnings": outcome.result.get("warnings", []),
        "detail": outcome.run.detail,
    }
    return jsonify(backup_json(entry, _timezone()) | extra), 200


def _backups_dir() -> Path:
    return Path(current_app.config["BACKUPS_DIR"])


@bp.get("/settings/backups")
def backups():
    """The backups, newest first, with the sha256 and last verification the catalogue holds
    (``here: false``: in another host's folder, named by ``host``)."""
    listed = listed_backups(get_db(), _backups_dir(), current_app.config["HOST_NAME"])
    return jsonify(backups=[backup_json(backup, _timezone()) for backup in listed])


@bp.get("/settings/backups/<name>")
def download_backup(name: str):
    """Download one backup by its exact name."""
    return send_backup(_backups_dir(), name)


@bp.delete("/settings/backups/<name>")
def delete_backup(name: str):
    """Delete one backup by its exact name."""
    try:
        delete_catalogued(get_db(), _backups_dir(), name, current_app.config["HOST_NAME"])
    except BackupError:
        abort_backup_not_here(_backups_dir(), name)
    return jsonify(deleted=name), 200


@bp.post("/settings/backups")
def upload_backup():
    """Upload a backup (multipart field ``file``): 201 when it passed every check; 400; 413."""
    try:
        upload, staged = staged_upload("file")
    except RequestEntityTooLarge:
        limit = current_app.config["MAX_UPLOAD_MB"]
        return jsonify(error=f"The file is larger than {limit} MB (MAX_UPLOAD_MB); nothing was kept."), 413
    except BackupError as exc:
        return jsonify(error=str(exc)), exc.status_code
    if upload is None or staged is None or not upload.filename:
        return jsonify(error='Send the backup as multipart/form-data in the field "file".'), 400
    try:
        backup = accept_upload(get_db(), _backups_dir(), staged, current_app.config["HOST_NAME"])
    except BackupError as exc:
        return jsonify(error=str(exc)), 400 if exc.status_code < 500 else exc.status_code
    listed = {entry.name: entry for entry in catalogued_backups(get_db(), _backups_dir())}
    return jsonify(backup_json(listed[backup.name], _timezone())), 201


@bp.post("/settings/backups/<name>/restore")
def restore_backup(name: str):
    """Restore a backup in the background after a safety backup: body ``{"confirm": "<name>"}``."""
    body = _json_body()
    if not isinstance(body, dict) or body.get("confirm") != name:
        return jsonify(error=f'Confirm with the exact backup name: {{"confirm": "{name}"}}.'), 400
    try:
        run = start_restore_in_background(current_app.config, get_db(), name)
    except BackupNotFound:
        abort_backup_not_here(_backups_dir(), name)
    except TaskBusy as busy:
        return jsonify(error=str(busy), running=busy_json(busy.running, BACKUP_TASK, _timezone())), 409
    return jsonify(run=run_json(run, _timezone())), 202


@bp.get("/settings/scheduler")
def scheduler_status():
    """Schedules and scheduler status."""
    _require_scheduler()
    config = current_app.config
    db = get_db()
    jobs = [job_json(task_status(config, db, task_id)) for task_id in TASKS]
    return jsonify(
        timezone=_timezone(),
        scheduler=health_json(scheduler_health(config, db), _timezone()),
        sqlite_version=sqlite3.sqlite_version,
        jobs=jobs,
        history=[run_json(run, _timezone()) for run in runs.recent_runs(db, None, 20)],
    )


def _task_named(name: str) -> Task:
    """The task of a URL (its id, or ``backup`` for ``backup_db``); 404 when there is none."""
    _require_scheduler()
    task = task_named(name)
    if task is None:
        abort(404)
    return task


@bp.post("/settings/scheduler/<task_name>")
def set_task_schedule(task_name: str):
    """Create or update a task's schedule; 400 with errors by field, nothing changed."""
    task = _task_named(task_name)
    if not request.is_json:
        return jsonify(errors={"json": ["Send Content-Type: application/json."]}), 400
    formdata, errors = formdata_from_json(_json_body())
    if errors:
        return jsonify(errors=errors), 400
    form = ScheduleForm(formdata)
    if not form.validate():
        return jsonify(errors={name: list(messages) for name, messages in form.errors.items()}), 400
    save_schedule(get_db(), task.id, form.schedule())
    return jsonify(job_json(task_status(current_app.config, get_db(), task.id))), 200


@bp.delete("/settings/scheduler/<task_name>")
def delete_task_schedule(task_name: str):
    """Remove a task's schedule: its mode becomes disabled."""
    task = _task_named(task_name)
    save_schedule(get_db(), task.id, Schedule("disabled"))
    return jsonify(job_json(task_status(current_app.config, get_db(), task.id))), 200


@bp.post("/settings/scheduler/<task_name>/run")
def run_task(task_name: str):
    """Start a run of the task in the background: 202 with the run, 409 while one runs."""
    task = _task_named(task_name)
    try:
        run = start_task_in_background(current_app.config, get_db(), task.id)
    except TaskBusy as busy:
        return jsonify(error=str(busy), running=busy_json(busy.running, task.id, _timezone())), 409
    return jsonify(run=run_json(run, _timezone())), 202


@bp.get("/settings/scheduler/runs/<int:run_id>")
def get_run(run_id: int):
    """One run, to follow a started backup."""
    _require_scheduler()
    run = runs.get_run(get_db(), run_id)
    if run is None:
        abort(404)
    return jsonify(run=run_json(run, _timezone()))


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of this API."""
    from app.api.openapi import openapi_document

    return jsonify(openapi_document())


@bp.get("/settings/scheduler/jobs")
def scheduler_jobs():
    """The job store's jobs, for debugging."""
    _require_scheduler()
    stored = dict(stored_jobs(get_db()))
    jobs = [
        {
            "id": task.id,
            "func": ENTRY_POINT,
            "args": [task.id],
            "stored": task.id in stored,
            "next_run_time": iso(stored.get(task.id), _timezone()),
        }
        for task in TASKS.values()
    ]
    return jsonify(jobs=jobs, timezone=_timezone())
