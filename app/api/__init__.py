"""The JSON API under /api/v1."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the API blueprint (its JSON calls do not use the HTML forms' CSRF token)."""
    from app.api import notifications, offsite  # noqa: F401 - their routes join the blueprint
    from app.api.routes import bp
    from app.extensions import csrf

    csrf.exempt(bp)
    app.register_blueprint(bp)
