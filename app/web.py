"""Cross-cutting web helpers: full page or partial, security headers, template filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn
from zoneinfo import ZoneInfo

from flask import Flask, Request, abort, current_app, jsonify, render_template, request, send_file
from markupsafe import Markup, escape
from sqlalchemy.exc import OperationalError
from werkzeug.datastructures import FileStorage

from app.extensions import get_db
from app.services.backups import BackupError, resolve_backup
from app.services.catalogue import BackupOnAnotherHost, host_holding
from app.services.uploads import discard_upload, open_staged_upload

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


# Routes whose multipart files stream into the backup folder (the CSRF check may parse the
# body before the route runs, so the request itself must know where files go).
UPLOAD_ENDPOINTS = frozenset({"settings.upload_backup", "api.upload_backup"})


class StagingRequest(Request):
    """A request whose uploaded backup streams straight into the backup folder, not into /tmp.

    Only for :data:`UPLOAD_ENDPOINTS`, which also get ``MAX_UPLOAD_MB`` as their size limit;
    every staged file not handed on is removed when the request ends, also after a 413.
    """

    @property
    def is_backup_upload(self) -> bool:
        return self.endpoint in UPLOAD_ENDPOINTS

    @property
    def max_content_length(self) -> int | None:
        if self.is_backup_upload:
            return current_app.config["MAX_UPLOAD_MB"] * 1024 * 1024
        return super().max_content_length

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        if not self.is_backup_upload:
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        path, handle = open_staged_upload(Path(current_app.config["BACKUPS_DIR"]))
        self.__dict__.setdefault("staged_paths", {})[id(handle)] = path
        return handle

    def close(self) -> None:
        super().close()
        for path in self.__dict__.get("staged_paths", {}).values():
            discard_upload(path)


def staged_upload(field: str) -> tuple[FileStorage | None, Path | None]:
    """The multipart file ``field`` of a backup upload and the path of its staged, closed file.

    Raises ``RequestEntityTooLarge`` above ``MAX_UPLOAD_MB``, and :class:`BackupTargetError`
    when the backup folder cannot hold it.
    """
    upload = request.files.get(field)
    if upload is None:
        return None, None
    path = request.__dict__.get("staged_paths", {}).get(id(upload.stream))
    if path is not None:
        upload.stream.close()
    return upload, path


def send_backup(backups_dir: Path, name: str):
    """A backup file by its exact listed name, as an attachment; 404 for any other name
    (saying which host holds it when it is in another host's folder)."""
    try:
        path = resolve_backup(backups_dir, name)
    except BackupError:
        abort_backup_not_here(backups_dir, name)
    return send_file(path, as_attachment=True, download_name=name, mimetype="application/vnd.sqlite3")


def abort_backup_not_here(backups_dir: Path, name: str) -> NoReturn:
    """404 for a backup not in this host's folder, saying which host holds it when the shared
    catalogue knows ("This backup is on host X, not on this one ...")."""
    holder = host_holding(get_db(), backups_dir, name, current_app.config["HOST_NAME"])
    if holder is not None:
        abort(404, description=str(BackupOnAnotherHost(name, holder)))
    abort(404)


def is_htmx() -> bool:
    """True when htmx made the request (it wants a fragment, not a page)."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


def render_page_or_partial(page: str, partial: str, status_code: int = 200, **context):
    """Render ``partial`` alone for htmx, else the full ``page`` that includes it."""
    template = partial if is_htmx() else page
    return render_template(template, **context), status_code


def local_time(value: datetime | None, with_zone: bool = True) -> str:
    """``2026-11-28 03:15 CET`` in the scheduler's zone; '-' for None."""
    if value is None:
        return "-"
    zone = ZoneInfo(current_app.config["SCHEDULER_TIMEZONE"])
    moment = value.astimezone(UTC).astimezone(zone)  # via UTC: normalises non-existent wall times
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")
    return f"{text} {moment.tzname()}" if with_zone else text


def relative_time(value: datetime | None, now: datetime | None = None) -> str:
    """``in 42 s`` / ``in 3 h 12 min`` / ``5 min ago`` / ``now``: whole units, never rounded up."""
    if value is None:
        return ""
    now = now or datetime.now(UTC)
    delta = (value - now).total_seconds()
    future = delta > 0
    seconds = int(abs(delta))  # truncated: 45 s is not yet "1 min"
    if seconds == 0:
        return "now"
    if seconds < 60:
        text = f"{seconds} s"
    else:
        days, rest = divmod(seconds // 60, 24 * 60)
        hours, minutes = divmod(rest, 60)
        parts = [f"{days} d"] if days else []
        if hours:
            parts.append(f"{hours} h")
        if minutes and not days:
            parts.append(f"{minutes} min")
        text = " ".join(parts)
    return f"in {text}" if future else f"{text} ago"


def breakable(name: str | None) -> Markup:
    """A file name that may wrap after its hyphens and dots (``<wbr>``), not mid-word."""
    return Markup(re.sub(r"([-.])", r"\1<wbr>", str(escape(name or ""))))


def zone_observes_dst(name: str, year: int | None = None) -> bool:
    """Whether a zone's offset differs between January and July (it has daylight saving time)."""
    zone = ZoneInfo(name)
    year = year or datetime.now(UTC).year
    return datetime(year, 1, 1, tzinfo=zone).utcoffset() != datetime(year, 7, 1, tzinfo=zone).utcoffset()


def file_size(value: int | None) -> str:
    """Human-readable bytes (1 KB = 1000 B)."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def duration(seconds: float | None) -> str:
    """``850 ms`` / ``12.4 s`` / ``3 min 5 s``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


DATABASE_BUSY = "The database is busy (locked by another process). Try again in a moment."


def database_busy(error: OperationalError):
    """A database locked past the busy timeout is a 503 the user can read, not a bare 500."""
    if "locked" not in str(error.orig):
        current_app.logger.exception("database error", exc_info=error)
        message, status = "Internal error: the database failed. See the server log.", 500
    else:
        current_app.logger.warning("database busy: %s", error.orig)
        message, status = DATABASE_BUSY, 503
    if request.path.startswith("/api/"):
        return jsonify(error=message), status
    # htmx does not swap error answers; app.js shows this header as a toast instead.
    return message + "\n", status, {"Content-Type": "text/plain; charset=utf-8", "X-Error-Message": message}


def init_app(app: Flask) -> None:
    """Register filters, the database-busy handler and the headers every answer carries."""
    app.request_class = StagingRequest
    app.register_error_handler(OperationalError, database_busy)
    app.jinja_env.add_extension("jinja2.ext.do")
    app.add_template_filter(local_time, "local_time")
    app.add_template_filter(relative_time, "relative_time")
    app.add_template_filter(file_size, "file_size")
    app.add_template_filter(duration, "duration")
    app.add_template_filter(breakable, "breakable")

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.endpoint != "static" and "Cache-Control" not in response.headers:
            # Pages and API answers: kept by the browser only, revalidated on every use ("no-store"
            # would also keep pages out of the back/forward cache).
            response.headers["Cache-Control"] = "private, no-cache"
        if response.mimetype == "application/vnd.sqlite3":
            # Set, not defaulted: send_file says "no-cache" (store, then revalidate), and a
            # downloaded backup is the whole database, which no cache may keep.
            response.headers["Cache-Control"] = "no-store"
        return response
