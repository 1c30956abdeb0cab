"""The task registry: what a schedulable task is, and the tasks this app has.

Adding a task is one body function and one :func:`register` call (README.md, "Adding a
scheduled task"). Every surface (Schedule sections, JSON API, CLI, status, health,
history) reads this registry, so nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from app.db import Database
from app.services.locks import FileLock

# The API's historical name for the backup task (DESIGN.md section 6).
API_ALIASES = {"backup": "backup_db"}


@dataclass(frozen=True)
class TaskContext:
    """What a task body gets: configuration, database, why it runs, and a progress callback."""

    config: Mapping
    db: Database
    trigger: str
    report: Callable[[str, int | None], None]
    run_id: int | None = None


@dataclass(frozen=True)
class Task:
    """A schedulable task.

    ``body`` returns the run's result fields (any of ``file``, ``size``, ``sha256``,
    ``detail``, plus objects for the caller; non-empty ``warnings`` make the run "success
    with warnings", status ``warning``: its purpose was met, a part of it was not) and raises
    :class:`app.services.errors.TaskError` on failure. ``lock`` makes runs of the task
    single-flight across processes; ``recover`` removes what a killed run left behind
    and runs under that lock. ``noun`` names one run in messages ("backup").
    """

    id: str
    title: str
    noun: str
    summary: str
    lock: Callable[[Mapping], FileLock]
    body: Callable[[TaskContext], dict]
    recover: Callable[[Mapping], object] = lambda config: None
    run_hint: str = ""  # shown under the section's "Run ... now" button

    @property
    def busy_message(self) -> str:
        return f"A {self.noun} is already running."

    @property
    def interrupted_message(self) -> str:
        return f"The process running this {self.noun} stopped before it finished."

    @property
    def api_name(self) -> str:
        """The name of the task in API paths (``backup`` for ``backup_db``)."""
        return next((alias for alias, task_id in API_ALIASES.items() if task_id == self.id), self.id)


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add ``task`` to the registry (again with the same id replaces it)."""
    TASKS[task.id] = task
    return task


def task_named(name: str) -> Task | None:
    """The task a URL or CLI argument names: its id, or an API alias such as ``backup``."""
    return TASKS.get(API_ALIASES.get(name, name))
