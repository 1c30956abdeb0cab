"""JSON API for off-site targets (DESIGN.md section 9); secrets never come back.

``GET``/``POST /settings/offsite``, ``PUT``/``DELETE /settings/offsite/<id>``,
``POST /settings/offsite/<id>/test``, and for recovery ``GET .../<id>/copies`` and
``POST .../<id>/copies/fetch`` (the key is used for that request only).
"""

from __future__ import annotations

from pathlib import Path

from flask import abort, current_app, jsonify, request

from app.api.routes import _json_body, bp, iso
from app.api.serializers import backup_json
from app.extensions import get_db
from app.forms.offsite import OffsiteTargetForm, target_formdata_from_json
from app.models import OffsiteTarget
from app.services import offsite, offsite_targets
from app.services.catalogue import catalogued_backups
from app.services.sealing import SealError, check_identity


def _timezone() -> str:
    return current_app.config["SCHEDULER_TIMEZONE"]


def target_json(target: OffsiteTarget, copies: int | None = None) -> dict:
    view = offsite_targets.public_view(target, copies, for_json=False)
    for key in ("last_result_at", "last_upload_at"):
        view[key] = iso(view[key], _timezone()) if view[key] else None
    return view


def _target(target_id: int) -> OffsiteTarget:
    target = offsite_targets.get_target(get_db(), target_id)
    if target is None:
        abort(404)
    return target


def _form_errors(form: OffsiteTargetForm) -> dict[str, list[str]]:
    return {field.name: list(field.errors) for field in form if field.errors}


@bp.get("/settings/offsite")
def list_offsite_targets():
    """Every target, secrets masked, with its last result and how many copies it holds."""
    db = get_db()
    counts = offsite_targets.copy_counts(db)
    return jsonify(
        targets=[target_json(target, counts.get(target.id, 0)) for target in offsite_targets.list_targets(db)]
    )


@bp.post("/settings/offsite")
def create_offsite_target():
    """Add a target: 201 with it (masked); 400 ``{"errors"}`` by field and nothing saved."""
    if not request.is_json:
        return jsonify(errors={"json": ["Send Content-Type: application/json."]}), 400
    formdata, errors = target_formdata_from_json(_json_body())
    if errors:
        return jsonify(errors=errors), 400
    db = get_db()
    form = OffsiteTargetForm(formdata, db=db)
    if not form.validate():
        return jsonify(errors=_form_errors(form)), 400
    try:
        target = offsite_targets.save_target(db, form.settings)
    except offsite_targets.TargetError as exc:
        return jsonify(errors={exc.field: [str(exc)]}), 400
    return jsonify(target_json(target, 0)), 201


@bp.put("/settings/offsite/<int:target_id>")
def replace_offsite_target(target_id: int):
    """Change a target: a field left out keeps its stored value (the secrets included)."""
    if not request.is_json:
        return jsonify(errors={"json": ["Send Content-Type: application/json."]}), 400
    db = get_db()
    stored = _target(target_id)
    body = _json_body()
    if not isinstance(body, dict):
        return jsonify(errors={"json": ["Send a JSON object with the fields to change."]}), 400
    formdata, errors = target_formdata_from_json({**_stored_payload(stored), **body}, partial=True)
    if errors:
        return jsonify(errors=errors), 400
    form = OffsiteTargetForm(formdata, db=db, stored=stored)
    if not form.validate():
        return jsonify(errors=_form_errors(form)), 400
    target = offsite_targets.save_target(db, form.settings, stored.id)
    counts = offsite_targets.copy_counts(db)
    return jsonify(target_json(target, counts.get(target.id, 0))), 200


def _stored_payload(target: OffsiteTarget) -> dict:
    """The stored target as a JSON body without its secrets (an absent secret keeps the stored one)."""
    fields = ("name", "endpoint", "region", "bucket", "prefix", "addressing", "access_key", "encryption")
    payload = {name: getattr(target, name) for name in fields}
    payload.update(recipient=target.recipient, keep_last=target.keep_last, enabled=target.enabled)
    return payload


@bp.delete("/settings/offsite/<int:target_id>")
def delete_offsite_target(target_id: int):
    """Forget a target (its remote copies stay in the bucket)."""
    target = _target(target_id)
    offsite_targets.delete_target(get_db(), target.id)
    return jsonify(deleted=target.id), 200


@bp.post("/settings/offsite/<int:target_id>/test")
def test_offsite_target(target_id: int):
    """Write, read back and delete a small object: 200 ``{"ok", "message"}`` either way."""
    target = _target(target_id)
    ok, message = offsite.test_connection(current_app.config, get_db(), target)
    return jsonify(ok=ok, message=message), 200


@bp.get("/settings/offsite/<int:target_id>/copies")
def list_offsite_copies(target_id: int):
    """The sealed copies under the target's prefix; 502 with the reason when the server fails."""
    target = _target(target_id)
    try:
        copies = offsite.list_remote(current_app.config, get_db(), target)
    except Exception as exc:
        return jsonify(error=offsite.explain(exc, target, current_app.config["OFFSITE_TIMEOUT_SECONDS"])), 502
    return jsonify(
        copies=[
            {
                "key": copy.key,
                "backup": copy.backup,
                "size": copy.size,
                "modified": iso(copy.modified, _timezone()),
                "ours": copy.ours,
                "plain_size": copy.plain_size,
                "plain_sha256": copy.plain_sha256,
            }
            for copy in copies
        ]
    )


@bp.post("/settings/offsite/<int:target_id>/copies/fetch")
def fetch_offsite_copy(target_id: int):
    """Bring a copy back as an "uploaded" backup: body ``{"key", "identity"}`` or ``{"key", "passphrase"}``.

    201 with the backup (restore it with ``POST /settings/backups/<file>/restore``); 400 with
    the reason when the key does not open it, a check fails or the server fails."""
    target = _target(target_id)
    body = _json_body()
    if not isinstance(body, dict) or not isinstance(body.get("key"), str):
        return jsonify(error='Send {"key": "<object key>", "identity": "AGE-SECRET-KEY-1..."} or a "passphrase".'), 400
    identity, passphrase = body.get("identity"), body.get("passphrase")
    if not any(isinstance(value, str) and value.strip() for value in (identity, passphrase)):
        wanted = "identity (AGE-SECRET-KEY-1...)" if target.encryption == "age" else "passphrase"
        return jsonify(error=f"Send the {wanted} that opens the copy (or the other field if it was sealed so)."), 400
    try:
        offsite.check_remote_key(target, body["key"])
        use_identity = isinstance(identity, str) and bool(identity.strip())
        backup = offsite.fetch_copy(
            current_app.config,
            get_db(),
            target,
            body["key"],
            Path(current_app.config["BACKUPS_DIR"]),
            identity=check_identity(identity) if use_identity else None,
            passphrase=None if use_identity else passphrase,
        )
    except (offsite.OffsiteError, SealError) as exc:
        return jsonify(error=str(exc)), 400
    listed = {entry.name: entry for entry in catalogued_backups(get_db(), Path(current_app.config["BACKUPS_DIR"]))}
    return jsonify(backup_json(listed[backup.name], _timezone())), 201
