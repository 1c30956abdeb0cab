"""The backup tasks: "Database backup" (``backup_db``), its restores, and "Backup verification".

A restore is a run of ``backup_db`` with trigger "restore": it holds the backup lock,
so backups and restores are mutually single-flight, and its phases show in the backup
task's status region.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from app.db import Database
from app.models import JobRun
from app.services import catalogue, offsite, offsite_targets, runs
from app.services.backups import perform_sqlite_backup, remove_stale_temp_files, resolve_backup
from app.services.locks import FileLock
from app.services.pg_backups import perform_pg_backup, restore_pg_backup
from app.services.registry import TASKS, Task, TaskContext, register
from app.services.restore import remove_restore_leftovers, restore_backup
from app.services.retention import keep_last
from app.services.runner import RunOutcome, TaskBusy, claim_task, complete_task, finish_in_background
from app.services.verification import verify_backups

BACKUP_TASK = "backup_db"
VERIFY_TASK = "verify_backups"


def _backup_db(ctx: TaskContext) -> dict:
    kind = "manual" if ctx.trigger == "manual" else "auto"
    keep = keep_last(ctx.config, ctx.db)  # the Settings page's choice, else BACKUP_KEEP_LAST
    if ctx.config["DATABASE_PATH"] is None:  # PostgreSQL data: pg_dump
        result = perform_pg_backup(
            ctx.config["DATABASE_URL"], Path(ctx.config["BACKUPS_DIR"]), kind=kind, keep_last=keep, progress=ctx.report
        )
    else:
        result = perform_sqlite_backup(
            Path(ctx.config["DATABASE_PATH"]),
            Path(ctx.config["BACKUPS_DIR"]),
            kind=kind,
            keep_last=keep,
            busy_timeout=ctx.config["BACKUP_BUSY_TIMEOUT_SECONDS"],
            progress=ctx.report,
        )
    host = ctx.config["HOST_NAME"]
    catalogue.record_backup(ctx.db, result.name, result.kind, result.size, result.sha256, result.created_at, host)
    for name in result.pruned:  # retention deleted them: gone from every host's list
        catalogue.forget_backup(ctx.db, name)
    answer = {"file": result.name, "size": result.size, "sha256": result.sha256, "backup": result}
    if offsite_targets.enabled_targets(ctx.db):
        if ctx.run_id is not None:  # a run killed while uploading still names its backup
            runs.record_result_fields(ctx.db, ctx.run_id, file=result.name, size=result.size, sha256=result.sha256)
        # A phase of the same run, from the verified local file; it never touches that file.
        outcomes = offsite.copy_to_targets(ctx.config, ctx.db, result.path, result.sha256, ctx.run_id, ctx.report)
        answer["detail"] = offsite.summary(outcomes)
        answer["warnings"] = [f"{item.target}: {item.message}" for item in outcomes if not item.ok]
        answer["offsite"] = outcomes
    return answer


def _restore_body(name: str) -> Callable[[TaskContext], dict]:
    """The body of a restore run of ``name`` (a run of ``backup_db`` with trigger "restore")."""

    def restore(ctx: TaskContext) -> dict:
        if ctx.config["DATABASE_PATH"] is None:  # PostgreSQL data: pg_restore
            return _restore_pg(ctx, name)
        result = restore_backup(
            Path(ctx.config["DATABASE_PATH"]),
            Path(ctx.config["BACKUPS_DIR"]),
            ctx.db,
            name,
            busy_timeout=ctx.config["RESTORE_BUSY_TIMEOUT_SECONDS"],
            report=ctx.report,
            host=ctx.config["HOST_NAME"],
        )
        detail = f"Safety backup of the previous data: {result.safety.name}"
        return {"file": result.name, "size": result.size, "sha256": result.sha256, "detail": detail, "restore": result}

    return restore


def _restore_pg(ctx: TaskContext, name: str) -> dict:
    backups_dir = Path(ctx.config["BACKUPS_DIR"])
    host = ctx.config["HOST_NAME"]

    def record(safety) -> None:  # catalogued before pg_restore runs: kept and listed even if it fails
        catalogue.record_backup(ctx.db, safety.name, safety.kind, safety.size, safety.sha256, safety.created_at, host)

    result = restore_pg_backup(ctx.config["DATABASE_URL"], backups_dir, name, report=ctx.report, on_safety=record)
    detail = f"Safety backup of the previous data: {result.safety.name}"
    return {"file": result.name, "size": result.size, "sha256": result.sha256, "detail": detail, "restore": result}


def _data_lock_path(config: Mapping, suffix: str) -> Path:
    """Beside the SQLite data file; in the instance folder for PostgreSQL data (one per host)."""
    if config["DATABASE_PATH"] is None:
        return Path(config["INSTANCE_PATH"]) / f"data{suffix}"
    data = Path(config["DATABASE_PATH"])
    return data.with_name(data.name + suffix)


def _backup_recover(config: Mapping) -> list[str]:
    backups_dir = Path(config["BACKUPS_DIR"])
    return (
        remove_stale_temp_files(backups_dir)
        + remove_restore_leftovers(backups_dir)
        + offsite.remove_leftovers(backups_dir)
    )


def _backup_lock(config: Mapping) -> FileLock:
    return FileLock(_data_lock_path(config, ".backup.lock"))


# How long a restore waits for a backup's off-site phase to stop for it (it checks about five
# times a second while it sends; a hanging server answers only at its read timeout).
RESTORE_WAIT_SECONDS = 15.0


def _claim_restore(config: Mapping, db: Database) -> tuple[JobRun, FileLock]:
    """Claim the backup task for a restore. A backup in its off-site phase (its local backup
    already made and verified) is asked to stop: an emergency restore never waits for an upload."""
    try:
        return claim_task(config, db, BACKUP_TASK, "restore")
    except TaskBusy as busy:
        running = busy.running
        uploading = running is not None and running.trigger != "restore" and _off_site_phase(running.phase)
        if not uploading:
            raise
    offsite.request_cancel(Path(config["BACKUPS_DIR"]))
    try:
        return claim_task(config, db, BACKUP_TASK, "restore", wait=RESTORE_WAIT_SECONDS)
    finally:
        offsite.clear_cancel(Path(config["BACKUPS_DIR"]))


def _off_site_phase(phase: str | None) -> bool:
    return bool(phase) and phase.startswith(("sealing", "uploading"))


def restore_now(config: Mapping, db: Database, name: str) -> RunOutcome:
    """Restore the backup ``name`` in this thread (the CLI); raises :class:`TaskBusy` while one runs."""
    resolve_backup(Path(config["BACKUPS_DIR"]), name)
    run, lock = _claim_restore(config, db)
    return complete_task(config, db, run, lock, body=_restore_body(name))


def start_restore_in_background(config: Mapping, db: Database, name: str) -> JobRun:
    """Claim a restore of ``name`` (refused while a backup or restore runs, but a backup's off-site
    phase is stopped for it), finish it in a thread."""
    resolve_backup(Path(config["BACKUPS_DIR"]), name)
    run, lock = _claim_restore(config, db)
    finish_in_background(config, db, run, lock, _restore_body(name))
    return run


def _verify_backups(ctx: TaskContext) -> dict:
    found = verify_backups(
        ctx.db,
        Path(ctx.config["BACKUPS_DIR"]),
        ctx.config["BACKUP_VERIFY_COUNT"],
        ctx.report,
        host=ctx.config["HOST_NAME"],
    )
    return {"detail": found.summary(), "verification": found}


def _verify_lock(config: Mapping) -> FileLock:
    # Its own lock: a verification only reads backup files, so it may run beside a backup
    # or a restore; a file pruned meanwhile is reported as deleted, not as damaged.
    return FileLock(_data_lock_path(config, ".verify.lock"))


def register_builtin_tasks() -> dict[str, Task]:
    """Put this app's tasks in the registry (idempotent); the app factory calls it."""
    register(
        Task(
            id=BACKUP_TASK,
            title="Database backup",
            noun="backup",
            summary="Automatic backups of the database.",
            lock=_backup_lock,
            body=_backup_db,
            recover=_backup_recover,
            run_hint="The same as “Backup DB now”: a manual backup, run in the background.",
        )
    )
    register(
        Task(
            id=VERIFY_TASK,
            title="Backup verification",
            noun="verification",
            summary=(
                "Checks that the newest backups still restore: SQLite's full integrity check and the "
                "sha256 recorded when each was made. Weekly is a good choice."
            ),
            lock=_verify_lock,
            body=_verify_backups,
        )
    )
    return TASKS
