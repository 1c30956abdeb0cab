"""gunicorn settings for ``make run``; each can be overridden on the command line."""

import ipaddress
import os
import sys
from pathlib import Path

from dotenv import dotenv_values


def _bind() -> str:
    """BIND, but only loopback while no ADMIN_PASSWORD protects the app."""
    env = {**dotenv_values(Path(__file__).with_name(".env")), **os.environ}
    bind = (env.get("BIND") or "127.0.0.1:8000").strip()
    if bind.startswith(("unix:", "fd://")) or (env.get("ADMIN_PASSWORD") or env.get("ADMIN_PASSWORD_HASH", "").strip()):
        return bind  # a unix socket is local; a password protects the app
    host, separator, port = bind.rpartition(":")
    if not separator or host.endswith(":"):  # "0.0.0.0" or a bare IPv6 address: gunicorn's port
        host, port = bind, "8000"
    host = host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        sys.stderr.write(
            f"No ADMIN_PASSWORD is set: listening on 127.0.0.1:{port} instead of {bind}. "
            "Set ADMIN_PASSWORD to serve other machines.\n"
        )
        return f"127.0.0.1:{port}"
    return bind


bind = _bind()
workers = int(os.environ.get("WEB_WORKERS", "2"))
# Threads, so a long synchronous "Backup DB now" never blocks the status polls.
worker_class = "gthread"
threads = 4
# Each worker builds its own app; the scheduler's leader lock picks one of them.
preload_app = False
timeout = 60
graceful_timeout = 20
accesslog = "-"
# gunicorn 27's control socket is one path per user: two servers (tests, a second
# instance) would share it, and nothing here uses it.
control_socket_disable = True
