"""The one failure type every task raises: its message is fit to show a user."""

from __future__ import annotations


class TaskError(Exception):
    """A run of a task failed (or could not start); ``status_code`` is the HTTP answer that fits."""

    status_code = 500
