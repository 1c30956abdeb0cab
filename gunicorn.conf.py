"""gunicorn settings for ``make run``; each can be overridden on the command line."""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", "2"))
# Threads, so a long synchronous "Backup DB now" never blocks the status polls.
worker_class = "gthread"
threads = 4
# Each worker builds its own app; the scheduler's leader lock picks one of them.
preload_app = False
timeout = 60
graceful_timeout = 20
accesslog = "-"
