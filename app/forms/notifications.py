"""The "Notifications" form: the one place notification settings are validated, for HTML, JSON and CLI."""

from __future__ import annotations

from werkzeug.datastructures import MultiDict
from wtforms import Form, SelectChoice, StringField, TextAreaField, ValidationError

from app.forms.schedule import CheckboxListField
from app.services.notification_settings import EVENTS, NotificationConfig
from app.services.notification_urls import NotificationUrlError, mask, mask_ping, parse_ping_url, parse_urls

JSON_FIELDS = {"urls": list, "events": list, "ping_url": str}


class NotificationsForm(Form):
    """Notification URLs (one per line, checked by Apprise), the events that send, the ping URL.

    A line (or ping URL) sent back exactly as it was shown masked keeps the stored secret.
    """

    urls = TextAreaField("Notification URLs")
    events = CheckboxListField("Events", choices=[SelectChoice(key, label) for key, label in EVENTS.items()])
    ping_url = StringField("Ping URL")

    def __init__(self, formdata=None, *, stored: NotificationConfig | None = None, **kwargs) -> None:
        super().__init__(formdata, **kwargs)
        self.stored = stored or NotificationConfig()
        self.parsed_urls: list[str] = []
        self.parsed_ping_url: str | None = None

    def validate_urls(self, field) -> None:
        try:
            self.parsed_urls = parse_urls(field.data or "", list(self.stored.urls))
        except NotificationUrlError as exc:
            raise ValidationError(str(exc)) from None

    def validate_ping_url(self, field) -> None:
        try:
            self.parsed_ping_url = parse_ping_url(field.data, self.stored.ping_url)
        except NotificationUrlError as exc:
            raise ValidationError(str(exc)) from None

    @classmethod
    def from_config(cls, config: NotificationConfig) -> NotificationsForm:
        """The form as shown: every secret masked."""
        form = cls(stored=config)
        form.urls.data = "\n".join(mask(url) for url in config.urls)
        form.events.data = list(config.events)
        form.ping_url.data = mask_ping(config.ping_url) if config.ping_url else ""
        return form


def notification_formdata_from_json(payload) -> tuple[MultiDict | None, dict[str, list[str]]]:
    """Check a JSON body's shape: ``{"urls": [...], "events": [...], "ping_url": str|null}``."""
    if not isinstance(payload, dict):
        return None, {"json": ['Send a JSON object, e.g. {"urls": ["json://host/hook"], "events": ["run_failed"]}.']}
    errors: dict[str, list[str]] = {}
    data = MultiDict()
    for key, value in payload.items():
        expected = JSON_FIELDS.get(key)
        if expected is None:
            errors[str(key)[:50]] = ["Unknown field."]
        elif value is None and key == "ping_url":
            data[key] = ""
        elif not isinstance(value, expected):
            errors[key] = [f"Must be {'a list of strings' if expected is list else 'a string or null'}."]
        elif expected is list and not all(isinstance(item, str) for item in value):
            errors[key] = ["Must be a list of strings."]
        elif key == "urls":
            bad = next((number for number, item in enumerate(value, 1) if "\n" in item or "\r" in item), None)
            if bad is not None:
                errors[key] = [f"Line {bad} contains a line break; send one URL per list item."]
            data[key] = "\n".join(value)
        elif key == "events":
            data.setlist(key, value)
        else:
            data[key] = value
    for key in JSON_FIELDS:
        if key not in payload and key not in errors:
            errors[key] = ["This field is required."]
    return (None if errors else data), errors
