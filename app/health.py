"""``GET /healthz``: database, scheduler heartbeat, last successful backup, SQLite version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flask import Blueprint, Flask, current_app, jsonify
from sqlalchemy import text

from app.extensions import get_db
from app.services import offsite_targets
from app.services.backup_tasks import BACKUP_TASK
from app.services.catalogue import unshared_folder_warning
from app.services.registry import TASKS
from app.services.sqlite_info import wal_reset_bug_fixed, wal_reset_warning
from app.services.status import scheduler_health, task_health

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when healthy; 503 with the reasons when degraded or the database is unreachable."""
    config = current_app.config
    db = get_db()
    body = {
        "status": "ok",
        "reasons": [],
        "sqlite_version": sqlite3.sqlite_version,
        "sqlite_wal_reset_bug_fixed": wal_reset_bug_fixed(),
        # Not a reason for 503 (nothing is down), but never a silent "ok".
        "warnings": [warning] if (warning := wal_reset_warning()) else [],
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
    tasks = {}
    problems = []
    for task in TASKS.values():
        state, saved_at = task_health(config, db, task, health.enabled)
        age = state.last_success_age
        tasks[task.id] = {
            "title": task.title,
            "schedule": state.schedule.as_dict(),
            "last_success_age_seconds": None if age is None else round(age),
            "last_result": state.last_finished.status if state.last_finished else None,
        }
        problems += state.problems(saved_at)
        body["warnings"] += state.warnings()
    body["tasks"] = tasks
    unshared = unshared_folder_warning(
        db, Path(config["BACKUPS_DIR"]), config["HOST_NAME"], bool(offsite_targets.enabled_targets(db))
    )
    if unshared:
        body["warnings"].append(unshared)
    body["backup"] = {key: tasks[BACKUP_TASK][key] for key in ("schedule", "last_success_age_seconds")}
    active = any(entry["schedule"]["mode"] != "disabled" for entry in tasks.values())
    if active and health.enabled and not health.running:
        body["reasons"].append("A schedule is active but the scheduler is not running.")
    body["reasons"] += problems
    if body["reasons"]:
        body["status"] = "degraded"
        return jsonify(body), 503
    return jsonify(body), 200


def init_app(app: Flask) -> None:
    """Register the health check."""
    app.register_blueprint(bp)
