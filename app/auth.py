"""Access control: a login page for people, a bearer token for scripts.

With ``ADMIN_PASSWORD`` (or ``ADMIN_PASSWORD_HASH``) set, every route but the login
page, the health check and static files needs a logged-in session or
``Authorization: Bearer <API_TOKEN>``. Without it nothing is protected, so the server
only listens on 127.0.0.1 (``gunicorn.conf.py``) and the page says so.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections import deque
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


class LoginThrottle:
    """At most ``limit`` wrong passwords per address in ``window`` seconds (per process)."""

    def __init__(self, limit: int = 5, window: float = 300) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def fail(self, address: str | None) -> None:
        with self._lock:
            self._failures.setdefault(address or "?", deque()).append(time.monotonic())

    def forget(self, address: str | None) -> None:
        with self._lock:
            self._failures.pop(address or "?", None)

    def retry_after(self, address: str | None) -> int:
        """Seconds until this address may try again (0: now)."""
        with self._lock:
            failures = self._failures.get(address or "?")
            if not failures:
                return 0
            now = time.monotonic()
            while failures and now - failures[0] > self.window:
                failures.popleft()
            if len(failures) < self.limit:
                return 0
            return int(self.window - (now - failures[0])) + 1


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
        refusal = _not_from_this_machine()
        return (refusal, 403) if refusal else None
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if bearer_token_valid():
        g.auth = "token"
        return None
    if session.get("admin") and session.get("password") == current_app.config["ADMIN_PASSWORD_FINGERPRINT"]:
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
    throttle: LoginThrottle = current_app.extensions["login_throttle"]
    wait = throttle.retry_after(request.remote_addr)
    if wait and request.method == "POST":
        form.password.errors = [f"Too many wrong passwords: try again in {wait // 60 + 1} min."]
        return render_template("auth/login.html", form=form), 429, {"Retry-After": str(wait)}
    if form.validate_on_submit():
        if check_password_hash(current_app.config["ADMIN_PASSWORD_HASH"], form.password.data):
            throttle.forget(request.remote_addr)
            session.clear()
            session["admin"] = True
            session["password"] = current_app.config["ADMIN_PASSWORD_FINGERPRINT"]
            session.permanent = True
            return redirect(_safe_next(request.args.get("next")))
        throttle.fail(request.remote_addr)
        form.password.errors.append("Wrong password.")
    status = 401 if form.errors else 200
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
def logout():
    """End the session."""
    session.clear()
    return redirect(url_for("auth.login"))


def _not_from_this_machine() -> str | None:
    """Why an unprotected app refuses this request; None when it comes from this machine.

    Belt and braces for gunicorn.conf.py, which binds 127.0.0.1 while no password is set.
    """
    if not _is_loopback(request.remote_addr):
        return "No password is set, so this server only answers requests from this machine.\n"
    if "Forwarded" in request.headers or "X-Forwarded-For" in request.headers:
        # A reverse proxy on this machine relays other machines' requests from 127.0.0.1.
        return "No password is set, so this server does not answer requests relayed by a proxy.\n"
    if not _is_local_host(request.host):
        # DNS rebinding: a site whose name resolves to 127.0.0.1 would otherwise be same-origin
        # with this app in the browser, and could read the API and download backups.
        return "No password is set, so this server only answers to http://localhost or http://127.0.0.1.\n"
    return None


def _is_loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def _is_local_host(host: str) -> bool:
    """Whether a Host header names this machine (localhost or a loopback address, any port)."""
    try:
        hostname = urlsplit(f"//{host}").hostname
    except ValueError:
        return False
    return hostname == "localhost" or _is_loopback(hostname)


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
    app.extensions["login_throttle"] = LoginThrottle()
    app.before_request(require_login)
