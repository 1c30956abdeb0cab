"""CLI: ``flask notify test`` (and ``flask notify show``)."""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import AppGroup

from app.extensions import get_db
from app.services.notification_settings import load_config, public_view
from app.services.notifications import send_test

notify_cli = AppGroup("notify", help="Notifications: show the settings, send a test message.")


@notify_cli.command("test")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def notify_test(as_json: bool) -> None:
    """Send a test message to every saved notification URL; exit 1 if any failed."""
    db = get_db()
    if not load_config(db).urls:
        raise click.ClickException("No notification URLs are saved (Settings > Notifications, or the API).")
    results = send_test(current_app.config, db)
    if as_json:
        rows = [{"url": r.target, "ok": r.ok, "error": r.error, "elapsed_ms": r.elapsed_ms} for r in results]
        click.echo(json.dumps({"results": rows}, indent=2))
    else:
        for result in results:
            click.echo(
                f"{'ok    ' if result.ok else 'FAILED'} {result.target}" + (f": {result.error}" if result.error else "")
            )
    if not all(result.ok for result in results):
        raise SystemExit(1)


@notify_cli.command("show")
def notify_show() -> None:
    """Print the notification settings (secrets masked) as JSON."""
    view = public_view(get_db())
    click.echo(
        json.dumps(
            {"urls": [entry["url"] for entry in view["urls"]], "events": view["events"], "ping_url": view["ping_url"]},
            indent=2,
        )
    )
