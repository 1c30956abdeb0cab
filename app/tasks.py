"""Entry points that stage-1 job stores hold by name: never rename or remove them.

APScheduler silently drops a stored job whose function cannot be imported. Jobs saved
since the task registry moved to ``app/services`` name
``app.services.scheduler:run_scheduled_task`` with the task id as argument.
"""

from __future__ import annotations


def scheduled_backup_job() -> None:
    """The stage-1 entry point of ``backup_db``."""
    from app.services.scheduler import run_scheduled_task

    run_scheduled_task("backup_db")
