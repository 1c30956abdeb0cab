"""Extension objects created once and bound to each app in the factory."""

from __future__ import annotations

from flask import current_app
from flask_wtf.csrf import CSRFProtect

from app.db import Database

csrf = CSRFProtect()


def get_db() -> Database:
    """The current app's database."""
    return current_app.extensions["db"]
