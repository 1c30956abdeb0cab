"""Triggers of earlier versions, kept so that jobs already in the job store still unpickle.

The job store pickles triggers by module and class name; a class it cannot find makes
APScheduler delete the job silently. Since cron semantics moved to
:class:`app.services.crontab.CrontabTrigger`, the leader replaces these on its first
reconcile (``app.services.scheduler``); they are also used once to tell the user whether
the stored schedule's runs changed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.triggers.cron import CronTrigger


class WallClockCronTrigger(CronTrigger):
    """A CronTrigger that runs a fixed wall-clock time once when clocks go back (before issue 11).

    Pickled as ``app.services.schedules.WallClockCronTrigger``: never rename or move the
    name away from that module.
    """

    def __init__(self, *args, once_per_wall_time: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.once_per_wall_time = once_per_wall_time

    def get_next_fire_time(self, previous_fire_time, now):
        upcoming = super().get_next_fire_time(previous_fire_time, now)
        if self.once_per_wall_time and previous_fire_time is not None:
            previous_wall = _wall_time(previous_fire_time, self.timezone)
            while upcoming is not None and _wall_time(upcoming, self.timezone) <= previous_wall:
                upcoming = super().get_next_fire_time(upcoming, upcoming)
        return upcoming

    def __getstate__(self):
        state = super().__getstate__()
        state["once_per_wall_time"] = self.once_per_wall_time
        return state

    def __setstate__(self, state):
        self.once_per_wall_time = state.pop("once_per_wall_time", True)
        super().__setstate__(state)


def _wall_time(moment: datetime, zone) -> datetime:
    return moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
