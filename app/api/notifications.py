"""JSON API for notifications: ``GET``/``PUT /settings/notifications``, ``POST .../test``; secrets masked."""

from __future__ import annotations

from flask import current_app, jsonify, request

from app.api.routes import _json_body, bp, iso
from app.extensions import get_db
from app.forms.notifications import NotificationsForm, notification_formdata_from_json
from app.services.notification_sends import SendResult
from app.services.notification_settings import EVENTS, load_config, public_view, save_config
from app.services.notifications import send_test


def _timezone() -> str:
    return current_app.config["SCHEDULER_TIMEZONE"]


def send_json(send, timezone: str) -> dict | None:
    """One recorded (or just made) send: masked target, event, ok, error, time."""
    if send is None:
        return None
    return {
        "url": send.target,
        "event": send.event,
        "ok": send.ok,
        "error": send.error,
        "at": iso(send.at, timezone),
        "elapsed_ms": send.elapsed_ms,
    }


def notifications_json(view: dict, timezone: str) -> dict:
    """The settings as answers show them: ``urls`` masked, ``events``, ``ping_url`` masked, last sends."""
    return {
        "urls": [entry["url"] for entry in view["urls"]],
        "events": view["events"],
        "ping_url": view["ping_url"],
        "last_sends": [
            {"url": entry["url"], "last_send": send_json(entry["last_send"], timezone)} for entry in view["urls"]
        ],
        "ping_last_send": send_json(view["ping_last_send"], timezone),
        "available_events": EVENTS,
        "timezone": timezone,
    }


@bp.get("/settings/notifications")
def get_notifications():
    """The notification settings, secrets masked."""
    return jsonify(notifications_json(public_view(get_db()), _timezone()))


@bp.put("/settings/notifications")
def put_notifications():
    """Replace the settings; 400 with errors by field and nothing saved. A masked URL sent back keeps its secret."""
    if not request.is_json:
        return jsonify(errors={"json": ["Send Content-Type: application/json."]}), 400
    formdata, errors = notification_formdata_from_json(_json_body())
    if errors:
        return jsonify(errors=errors), 400
    db = get_db()
    form = NotificationsForm(formdata, stored=load_config(db))
    if not form.validate():
        return jsonify(errors={name: list(messages) for name, messages in form.errors.items()}), 400
    config = save_config(db, form.parsed_urls, form.events.data or [], form.parsed_ping_url)
    return jsonify(notifications_json(public_view(db, config), _timezone())), 200


@bp.post("/settings/notifications/test")
def test_notifications():
    """A test message to every saved URL: 200 with one result per URL; 400 when none is saved."""
    db = get_db()
    if not load_config(db).urls:
        return jsonify(error="No notification URLs are saved."), 400
    results: list[SendResult] = send_test(current_app.config, db)
    return jsonify(results=[send_json(result, _timezone()) for result in results]), 200
