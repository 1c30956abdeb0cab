"""Application factory."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from dotenv import dotenv_values
from flask import Flask, redirect, url_for

from app.config import ConfigError, load_settings
from app.db import Database
from app.extensions import csrf

PROJECT_ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ConfigError", "create_app"]


def create_app(test_config: dict | None = None) -> Flask:
    """Create the app: configuration, database, CSRF, blueprints, scheduler service.

    ``test_config`` overrides environment variables by name (``DATABASE_URL`` ...) and
    any other Flask setting. The scheduler is created here but started only by the
    serving entry points (see ``app/wsgi.py``), never by CLI commands or tests.
    """
    overrides = {key: value for key, value in (test_config or {}).items()}
    env = _environment(overrides)
    settings = load_settings(env, default_instance_path=PROJECT_ROOT / "instance")

    app = Flask(
        __name__,
        instance_path=str(settings.instance_path),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.update(settings.as_flask_config())
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,
        PERMANENT_SESSION_LIFETIME=timedelta(days=7),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.config.update({key: value for key, value in overrides.items() if not isinstance(value, str)})
    _configure_logging(app)

    # The state database (schedules, history, job store, catalogue); the data database is
    # only ever read for backups and written by a confirmed restore.
    db = Database(settings.state_database_url, settings.state_database_path)
    db.create_tables()
    app.extensions["db"] = db

    from app.services.backup_tasks import register_builtin_tasks
    from app.services.data_database import ensure_data_database
    from app.services.scheduler import ENTRY_POINT, LEGACY_ENTRY_POINTS, SchedulerService
    from app.services.state_migration import move_state_tables

    tasks = register_builtin_tasks()
    app.extensions["scheduler"] = SchedulerService(app.config, db)
    if settings.database_path is not None:  # a SQLite data file (PostgreSQL data is never created here)
        ensure_data_database(settings.database_path)
        entry_points = {task_id: {ENTRY_POINT, LEGACY_ENTRY_POINTS.get(task_id, ENTRY_POINT)} for task_id in tasks}
        move_state_tables(settings.database_path, db, entry_points)

    from app import api, assets, auth, cli, health, web
    from app import settings as settings_pages

    web.init_app(app)
    assets.init_app(app)
    auth.init_app(app)
    # After the login check: the CSRF check reads the form, and a backup upload's form is
    # streamed to disk; nobody but a logged-in user may make the app write that.
    csrf.init_app(app)
    health.init_app(app)
    settings_pages.init_app(app)
    api.init_app(app)
    cli.init_app(app)

    @app.get("/")
    def root():
        return redirect(url_for("settings.index"))

    if os.environ.get("WERKZEUG_RUN_MAIN") == "true":
        # `flask run --debug`: this is the reloader's serving child (never its parent).
        app.extensions["scheduler"].start()

    return app


def _environment(overrides: dict) -> dict[str, str]:
    """Process environment over ``.env`` values, with string overrides from tests on top."""
    env = {}
    dotenv_file = PROJECT_ROOT / ".env"
    if dotenv_file.is_file() and not overrides.get("TESTING"):
        env.update({key: value for key, value in dotenv_values(dotenv_file).items() if value is not None})
    env.update(os.environ)
    env.update({key: value for key, value in overrides.items() if isinstance(value, str)})
    return env


def _configure_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    app.logger.setLevel(logging.INFO)
