"""CLI: ``flask offsite list|test|copies|fetch``: off-site targets from a shell, for recovery too.

Bringing a copy back on a new machine after a disaster: add the target (Settings page or
``POST /api/v1/settings/offsite``), then ``flask offsite copies ID``, ``flask offsite
fetch ID KEY --identity-file key.txt`` and ``flask backup restore FILE --yes``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from app.extensions import get_db
from app.services import offsite, offsite_targets
from app.services.sealing import SealError, check_identity

offsite_cli = AppGroup("offsite", help="Off-site copies: list and test targets, list and fetch remote copies.")


def _target(target_id: int):
    target = offsite_targets.get_target(get_db(), target_id)
    if target is None:
        raise click.ClickException(f"No off-site target with id {target_id} (see `flask offsite list`).")
    return target


@offsite_cli.command("list")
def offsite_list() -> None:
    """Print the targets (secrets masked) as JSON."""
    db = get_db()
    counts = offsite_targets.copy_counts(db)
    views = [
        offsite_targets.public_view(target, counts.get(target.id, 0)) for target in offsite_targets.list_targets(db)
    ]
    click.echo(json.dumps({"targets": views}, indent=2))


@offsite_cli.command("test")
@click.argument("target_id", type=int)
def offsite_test(target_id: int) -> None:
    """Write, read back and delete a small object on a target; exit 1 if that fails."""
    ok, message = offsite.test_connection(current_app.config, get_db(), _target(target_id))
    click.echo(message)
    if not ok:
        raise SystemExit(1)


@offsite_cli.command("copies")
@click.argument("target_id", type=int)
def offsite_copies(target_id: int) -> None:
    """List the sealed copies under a target's prefix, newest first: key, size, upload time."""
    target = _target(target_id)
    try:
        copies = offsite.list_remote(current_app.config, get_db(), target)
    except Exception as exc:
        raise click.ClickException(
            offsite.explain(exc, target, current_app.config["OFFSITE_TIMEOUT_SECONDS"])
        ) from None
    for copy in copies:
        fields = [copy.key, str(copy.size), copy.modified.isoformat()] + ([] if copy.ours else ["(not ours)"])
        click.echo("\t".join(fields))


@offsite_cli.command("fetch")
@click.argument("target_id", type=int)
@click.argument("key")
@click.option("--identity-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="age key file.")
@click.option("--passphrase-env", metavar="VAR", help="Read the passphrase from this environment variable.")
def offsite_fetch(target_id: int, key: str, identity_file: Path | None, passphrase_env: str | None) -> None:
    """Download KEY, check it, open it, and keep it as an uploaded backup (print its name).

    The key is used for this command only. Restore the result with `flask backup restore`.
    """
    target = _target(target_id)
    identity = passphrase = None
    if identity_file is None and not (passphrase_env and os.environ.get(passphrase_env)):
        wanted = "--identity-file (age private key)" if target.encryption == "age" else "--passphrase-env VAR"
        raise click.UsageError(f"Give the key that opens the copy: {wanted}.")
    try:
        if identity_file is not None:
            identity = check_identity(identity_file.read_text())
        else:
            passphrase = os.environ[passphrase_env]
        backup = offsite.fetch_copy(
            current_app.config,
            get_db(),
            target,
            key,
            Path(current_app.config["BACKUPS_DIR"]),
            identity=identity,
            passphrase=passphrase,
        )
    except (offsite.OffsiteError, SealError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(backup.name)
