"""APScheduler 3 adapted to one leader: the fire time a job runs for, and no work after shutdown."""

from __future__ import annotations

import threading
from datetime import datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED

_run_context = threading.local()


def current_run_times() -> list[datetime] | None:
    """The fire times the job running in this thread was submitted for (None outside a job)."""
    return getattr(_run_context, "run_times", None)


class _RunTimesPool:
    """Wraps the executor's thread pool to tell the job which fire time it is running for.

    APScheduler 3 does not pass the scheduled time to the job function; we need it to
    record ``scheduled_for`` and to tell a catch-up run from a punctual one.
    """

    def __init__(self, pool) -> None:
        self._pool = pool

    def submit(self, run_job, job, jobstore_alias, run_times, logger_name):
        return self._pool.submit(_run_with_times, run_job, job, jobstore_alias, run_times, logger_name)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait)


def _run_with_times(run_job, job, jobstore_alias, run_times, logger_name):
    _run_context.run_times = run_times
    try:
        return run_job(job, jobstore_alias, run_times, logger_name)
    finally:
        _run_context.run_times = None


class LeaderExecutor(ThreadPoolExecutor):
    """The thread pool executor whose jobs can ask which fire time they run for."""

    def __init__(self, max_workers: int = 4) -> None:
        super().__init__(max_workers)
        self._pool = _RunTimesPool(self._pool)


class LeaderScheduler(BackgroundScheduler):
    """A BackgroundScheduler that does nothing once shut down.

    APScheduler 3's loop runs ``_process_jobs`` once more after ``shutdown()`` wakes it:
    a job due at that moment is "submitted" to the stopped executor (an error) and its
    next run time is advanced in the store, so that run would be lost for the next leader.
    """

    def _process_jobs(self):
        if self.state == STATE_STOPPED:
            return None
        return super()._process_jobs()
