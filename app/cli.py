"""CLI: ``flask backup ...`` and ``flask scheduler ...`` (JSON output for scripts)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from werkzeug.datastructures import MultiDict

from app.api.serializers import backup_json, health_json, job_json, run_json
from app.extensions import get_db
from app.forms.schedule import ScheduleForm
from app.notify_cli import notify_cli
from app.offsite_cli import offsite_cli
from app.services import runs
from app.services.backup_tasks import BACKUP_TASK, restore_now
from app.services.backups import BackupNotFound
from app.services.catalogue import listed_backups, require_here
from app.services.registry import TASKS, task_named
from app.services.runner import TaskBusy, run_task_now
from app.services.schedules import MAX_HOURS, MIN_HOURS, MODES, save_schedule
from app.services.status import scheduler_health, task_status
from app.web import file_size

backup_cli = AppGroup("backup", help="Make and list database backups.")
scheduler_cli = AppGroup("scheduler", help="Inspect and set schedules.")
# `flask backup run`: 0 success, 1 failed, 3 success with warnings (an off-site copy failed).
WARNING_EXIT = 3


def _emit(data: dict) -> None:
    click.echo(json.dumps(data, indent=2))


@backup_cli.command("run")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def backup_run(as_json: bool) -> None:
    """Take a verified manual backup now (waits for it)."""
    try:
        outcome = run_task_now(current_app.config, get_db(), BACKUP_TASK)
    except TaskBusy:
        raise click.ClickException("A backup is already running.") from None
    if outcome.error is not None:
        raise click.ClickException(f"Backup failed: {outcome.error}")
    backup = outcome.result["backup"]
    warnings = outcome.result.get("warnings", [])
    if as_json:
        _emit(backup.as_dict() | {"status": outcome.run.status, "warnings": warnings})
    else:
        click.echo(f"{backup.path} ({file_size(backup.size)}, sha256 {backup.sha256}, {backup.duration_ms} ms)")
    for warning in warnings:
        click.echo(f"Warning: off-site copy to {warning}", err=True)
    if warnings:
        raise SystemExit(WARNING_EXIT)  # made and verified here; an off-site copy was not


@backup_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def backup_list(as_json: bool) -> None:
    """List backup files, newest first."""
    zone = current_app.config["SCHEDULER_TIMEZONE"]
    backups = listed_backups(get_db(), Path(current_app.config["BACKUPS_DIR"]), current_app.config["HOST_NAME"])
    if as_json:
        _emit({"backups": [backup_json(backup, zone) for backup in backups]})
        return
    for backup in backups:
        where = "" if backup.here else f"  on host {backup.host}"
        click.echo(f"{backup.name}  {file_size(backup.size):>10}  {backup.kind}{where}")


@backup_cli.command("restore")
@click.argument("file")
@click.option("--yes", is_flag=True, help="Do not ask to type the backup name.")
@click.option("--json", "as_json", is_flag=True, help="Print the finished run as JSON.")
def backup_restore(file: str, yes: bool, as_json: bool) -> None:
    """Restore the backup FILE (its listed name) into the live data, after a safety backup."""
    if not yes:
        typed = click.prompt(f"This replaces the live data with {file}. Type the backup name to confirm")
        if typed.strip() != file:
            raise click.ClickException("The name did not match; nothing was changed.")
    try:
        # A file in another host's folder: say which host holds it (BackupOnAnotherHost).
        require_here(get_db(), Path(current_app.config["BACKUPS_DIR"]), file, current_app.config["HOST_NAME"])
        outcome = restore_now(current_app.config, get_db(), file)
    except BackupNotFound as exc:
        raise click.ClickException(str(exc)) from None
    except TaskBusy as busy:
        raise click.ClickException(str(busy)) from None
    if as_json:
        _emit(run_json(outcome.run, current_app.config["SCHEDULER_TIMEZONE"]))
    if outcome.error is not None:
        raise click.ClickException(f"Restore failed: {outcome.error}")
    if not as_json:
        click.echo(f"Restored {file}. {outcome.run.detail}")


@scheduler_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def scheduler_status(as_json: bool) -> None:
    """Show schedules, next runs, the scheduler's health and recent runs."""
    config = current_app.config
    db = get_db()
    zone = config["SCHEDULER_TIMEZONE"]
    health = health_json(scheduler_health(config, db), zone)
    jobs = [job_json(task_status(config, db, task_id)) for task_id in TASKS]
    if as_json:
        history = [run_json(run, zone) for run in runs.recent_runs(db, None, 20)]
        _emit(
            {
                "timezone": zone,
                "scheduler": health,
                "sqlite_version": sqlite3.sqlite_version,
                "jobs": jobs,
                "history": history,
            }
        )
        return
    state = "running" if health["running"] else "not running" if health["enabled"] else "disabled by configuration"
    click.echo(f"Scheduler: {state} (zone {zone})")
    for job in jobs:
        last = job["last_run"]
        click.echo(f"{job['id']}: {job['description']}")
        click.echo(f"  next run: {job['next_run_at'] or '-'}")
        click.echo(f"  last run: {last['status'] + ' at ' + last['started_at'] if last else '-'}")


@scheduler_cli.command("set")
@click.option(
    "--task",
    "task_id",
    default=BACKUP_TASK,
    show_default=True,
    help="The task whose schedule to set (flask scheduler status lists them).",
)
@click.option("--mode", type=click.Choice(list(MODES)), required=True, help="The strategy.")
@click.option("--time", "time_of_day", help="HH:MM, for daily and weekly.")
@click.option("--weekdays", help="Comma-separated, e.g. mon,thu (weekly).")
@click.option("--cron", help="Five-field cron expression (cron).")
@click.option("--every-hours", help=f"{MIN_HOURS} to {MAX_HOURS} (interval).")
def scheduler_set(
    task_id: str, mode: str, time_of_day: str | None, weekdays: str | None, cron: str | None, every_hours: str | None
):
    """Save a task's schedule (validated like the form); the running scheduler applies it."""
    task = task_named(task_id)
    if task is None:
        raise click.BadParameter(f"no task {task_id!r}; tasks: {', '.join(TASKS)}", param_hint="--task")
    data = MultiDict({"mode": mode})
    for key, value in (("time", time_of_day), ("cron", cron), ("every_hours", every_hours)):
        if value is not None:
            data[key] = value
    if weekdays:
        data.setlist("weekdays", [day.strip() for day in weekdays.split(",") if day.strip()])
    form = ScheduleForm(data)
    if not form.validate():
        for name, messages in form.errors.items():
            for message in messages:
                click.echo(f"{name}: {message}", err=True)
        raise SystemExit(2)
    save_schedule(get_db(), task.id, form.schedule())
    _emit(job_json(task_status(current_app.config, get_db(), task.id)))


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create the database tables (the app also does this on start) and say where things live."""
    config = current_app.config
    click.echo(f"Data:     {config['DATABASE_PATH'] or _masked(config['DATABASE_URL'])}")
    click.echo(f"State:    {config['STATE_DATABASE_PATH'] or _masked(config['STATE_DATABASE_URL'])}")
    click.echo(f"Backups:  {config['BACKUPS_DIR']}")


def _masked(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def init_app(app: Flask) -> None:
    """Register the command groups."""
    app.cli.add_command(backup_cli)
    app.cli.add_command(scheduler_cli)
    app.cli.add_command(init_db)
    app.cli.add_command(notify_cli)
    app.cli.add_command(offsite_cli)
