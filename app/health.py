"""``GET /healthz``: database, scheduler heartbeat, last successful backup, SQLite version."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

from flask import Blueprint, Flask, current_app, jsonify
from sqlalchemy import text

from app.extensions import get_db
from app.models import utcnow
from app.services import runs
from app.services.scheduler import load_schedule
from app.services.staleness import schedule_period
from app.services.status import scheduler_health

bp = Blueprint("health", __name__)

BACKUP_TASK = "backup_db"
# sqlite.org/wal.html: versions before 3.51.3 can corrupt a WAL database in a rare race.
WAL_RESET_FIXED = (3, 51, 3)


@bp.get("/healthz")
def healthz():
    """200 when healthy; 503 with the reasons when degraded or the database is unreachable."""
    config = current_app.config
    db = get_db()
    body = {
        "status": "ok",
        "reasons": [],
        "sqlite_version": sqlite3.sqlite_version,
        "sqlite_wal_reset_bug_fixed": sqlite3.sqlite_version_info >= WAL_RESET_FIXED,
    }
    try:
        with db.session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure here means "not reachable"
        body.update(status="error", database={"reachable": False, "error": str(exc)})
        body["reasons"].append("The database is not reachable.")
        return jsonify(body), 503
    body["database"] = {"reachable": True}

    health = scheduler_health(config, db)
    body["scheduler"] = {
        "enabled": health.enabled,
        "running": health.running,
        "heartbeat_age_seconds": None if health.heartbeat_age is None else round(health.heartbeat_age, 1),
    }
    schedule, row = load_schedule(db, BACKUP_TASK)
    active = health.enabled and schedule.mode != "disabled"
    last_success = runs.latest_run(db, BACKUP_TASK, status="success", backups_only=True)
    age = None if last_success is None else (utcnow() - last_success.finished_at).total_seconds()
    body["backup"] = {"schedule": schedule.as_dict(), "last_success_age_seconds": None if age is None else round(age)}

    if active and not health.running:
        body["reasons"].append("A schedule is active but the scheduler is not running.")
    period = schedule_period(schedule, config["SCHEDULER_TIMEZONE"], utcnow()) if active else None
    if period is not None:
        since = last_success.finished_at if last_success else row.updated_at
        if utcnow() - since > 2 * period:
            body["reasons"].append(
                f"The last successful backup is older than twice the schedule's period ({_hours(2 * period)})."
            )
    if body["reasons"]:
        body["status"] = "degraded"
        return jsonify(body), 503
    return jsonify(body), 200


def _hours(period: timedelta) -> str:
    return f"{period.total_seconds() / 3600:g} h"


def init_app(app: Flask) -> None:
    """Register the health check."""
    app.register_blueprint(bp)
