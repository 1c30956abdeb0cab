"""Helpers for the security tests: credentials, logging in, CSRF tokens, what a request could change."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from app.models import JobRun
from app.services import runs
from app.services.schedules import load_schedule
from tests.settings.html_tree import parse
from tests.support.waiting import wait_for

PASSWORD = "correct horse battery"
TOKEN = "t" * 32
BEARER = {"Authorization": f"Bearer {TOKEN}"}
# The same password behind a hash that is quick to check, for tests about requests rather than hashing
# (the default scrypt costs ~0.15 s per app and per login).
QUICK_PASSWORD_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
AUTH_VARIABLES = ("ADMIN_PASSWORD", "ADMIN_PASSWORD_HASH", "API_TOKEN", "BIND")
RUN_TIMEOUT_SECONDS = 10


def csrf_token_from(markup: str) -> str | None:
    """The token a page carries: the hidden ``csrf_token`` input, else the one htmx sends (body hx-headers)."""
    document = parse(markup)
    hidden = document.find("input", name="csrf_token")
    if hidden is not None:
        return hidden.attrs["value"]
    body = document.find("body")
    if body is not None and body.attrs.get("hx-headers"):
        return json.loads(body.attrs["hx-headers"]).get("X-CSRFToken")
    return None


def log_in(client, password: str = PASSWORD, next_url: str | None = None):
    """Submit the login form like a browser: with the page's CSRF token when it has one."""
    page = client.get("/login")
    data = {"password": password}
    token = csrf_token_from(page.get_data(as_text=True))
    if token:
        data["csrf_token"] = token
    return client.post("/login", query_string={"next": next_url} if next_url else None, data=data)


def wait_for_runs_to_finish(app, task: str = "backup_db") -> None:
    """Background runs started by a test write to its database: let them end before teardown."""
    db = app.extensions["db"]
    wait_for(
        lambda: runs.latest_run(db, task, status="running") is None,
        RUN_TIMEOUT_SECONDS,
        message=f"a {task} run is still running after {RUN_TIMEOUT_SECONDS} s",
    )


def changeable_state(app) -> tuple:
    """Everything a request could change: files in the backup folder, the schedule, the run history."""
    db = app.extensions["db"]
    schedule, row = load_schedule(db, "backup_db")
    with db.session() as session:
        run_count = session.scalar(select(func.count()).select_from(JobRun))
    return (
        sorted(path.name for path in Path(app.config["BACKUPS_DIR"]).glob("*")),
        schedule.as_dict(),
        None if row is None else row.version,
        run_count,
    )
