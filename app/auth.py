"""Access control: a login page for people, a bearer token for scripts.

With ``ADMIN_PASSWORD`` (or ``ADMIN_PASSWORD_HASH``) set, every route but the login
page, the health check and static files needs a logged-in session or
``Authorization: Bearer <API_TOKEN>``. Without it nothing is protected, so the server
only listens on 127.0.0.1 (``gunicorn.conf.py``) and the page says so.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf import FlaskForm
from werkzeug.security import check_password_hash
from wtforms import PasswordField
from wtforms.validators import InputRequired

from app.web import is_htmx

bp = Blueprint("auth", __name__)

PUBLIC_ENDPOINTS = {"auth.login", "health.healthz", "static"}


class LoginForm(FlaskForm):
    """The administrator's password."""

    password = PasswordField("Password", validators=[InputRequired(message="Enter the password.")])


def bearer_token_valid() -> bool:
    """Whether the request carries the configured API token."""
    expected = current_app.config.get("API_TOKEN")
    header = request.headers.get("Authorization", "")
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), expected.encode())


def require_login():
    """Refuse anonymous requests when authentication is configured."""
    g.auth = None
    if not current_app.config["AUTH_ENABLED"]:
        if not _is_loopback(request.remote_addr):
            # Belt and braces for gunicorn.conf.py: unprotected, the app serves this machine only.
            return "No password is set, so this server only answers requests from this machine.\n", 403
        return None
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if bearer_token_valid():
        g.auth = "token"
        return None
    if session.get("admin"):
        g.auth = "session"
        return None
    if request.path.startswith("/api/"):
        response = jsonify(error="Authentication required: log in or send Authorization: Bearer <API_TOKEN>.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="backups"'
        return response, 401
    login_url = url_for("auth.login", next=request.full_path if request.method == "GET" else None)
    if is_htmx():
        return "", 401, {"HX-Redirect": login_url}
    return redirect(login_url)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login page."""
    if not current_app.config["AUTH_ENABLED"]:
        return redirect(url_for("settings.index"))
    form = LoginForm()
    if form.validate_on_submit():
        if check_password_hash(current_app.config["ADMIN_PASSWORD_HASH"], form.password.data):
            session.clear()
            session["admin"] = True
            session.permanent = True
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append("Wrong password.")
    status = 401 if form.errors else 200
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
def logout():
    """End the session."""
    session.clear()
    return redirect(url_for("auth.login"))


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _safe_next(target: str | None) -> str:
    """Only same-site paths; anything else goes to the Settings page."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("settings.index")


def init_app(app: Flask) -> None:
    """Register the login routes and the guard that runs before every request."""
    app.register_blueprint(bp)
    app.before_request(require_login)
