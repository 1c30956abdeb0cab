"""JSON shapes of runs, backups and task status (ISO 8601 times with offsets)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from app.models import JobRun
from app.services.catalogue import CataloguedBackup
from app.services.status import SchedulerHealth, TaskStatus


def iso(value: datetime | None, timezone: str) -> str | None:
    """ISO 8601 in the scheduler's zone, with its offset."""
    return None if value is None else value.astimezone(UTC).astimezone(ZoneInfo(timezone)).isoformat()


def run_json(run: JobRun | None, timezone: str) -> dict | None:
    """One run of a task."""
    if run is None:
        return None
    return {
        "id": run.id,
        "task": run.task,
        "trigger": run.trigger,
        "status": run.status,
        "scheduled_for": iso(run.scheduled_for, timezone),
        "started_at": iso(run.started_at, timezone),
        "finished_at": iso(run.finished_at, timezone),
        "duration_ms": None if run.duration_seconds is None else round(run.duration_seconds * 1000),
        "phase": run.phase,
        "progress": run.progress,
        "error": run.error,
        "file": run.file,
        "size": run.size,
        "sha256": run.sha256,
        "detail": run.detail,
    }


def busy_json(run: JobRun | None, task: str, timezone: str) -> dict:
    """The run a 409 names: never null, so a script can read ``running.id`` (null only when the
    lock holder records no run, e.g. another tool holding the backup lock)."""
    if run is not None:
        return run_json(run, timezone)
    return {
        "id": None,
        "task": task,
        "status": "running",
        "trigger": None,
        "started_at": None,
        "phase": None,
        "note": "Another process holds the backup lock and has not recorded a run.",
    }


def backup_json(backup: CataloguedBackup, timezone: str) -> dict:
    """One backup file, with its sha256 and last verification when the catalogue has them;
    ``here`` false: it is in the folder of ``host``, not this host's (download it there)."""
    return {
        "file": backup.name,
        "size": backup.size,
        "created_at": iso(backup.created_at, timezone),
        "kind": backup.kind,
        "sha256": backup.sha256,
        "verified_at": iso(backup.verified_at, timezone),
        "damaged": backup.damaged,
        "here": backup.here,
        "host": backup.host,
    }


def health_json(health: SchedulerHealth, timezone: str) -> dict:
    """The scheduler's health."""
    leader = health.leader
    return {
        "enabled": health.enabled,
        "running": health.running,
        "leader_pid": leader.leader_pid if leader else None,
        "leader_since": iso(leader.started_at, timezone) if leader else None,
        "heartbeat_at": iso(leader.heartbeat_at, timezone) if leader else None,
        "heartbeat_age_seconds": None if health.heartbeat_age is None else round(health.heartbeat_age, 1),
    }


def job_json(status: TaskStatus) -> dict:
    """A task's job: schedule, description, next run, last run, running run."""
    zone = status.timezone
    return {
        "id": status.task,
        "schedule": status.schedule.as_dict(),
        "description": status.description,
        "timezone": zone,
        "next_run_at": iso(status.next_run_at, zone),
        "upcoming": [iso(moment, zone) for moment in status.upcoming()],
        "pending_apply": status.pending_apply,
        "overdue": status.overdue,
        "last_run": run_json(status.last_run, zone),
        "running": run_json(status.running, zone),
        "notice": notice_json(status.notice, zone),
    }


def notice_json(notice, zone: str) -> dict | None:
    """A one-time notice about the stored schedule, with the runs before and after the change."""
    if notice is None:
        return None
    return {
        "message": notice.message,
        "runs_before": [iso(moment, zone) for moment in notice.before],
        "runs_after": [iso(moment, zone) for moment in notice.after],
    }
