"""The off-site target form: the one place a target is validated, for pages, JSON and CLI.

Secrets (secret key, passphrase) are never shown back: on an edit, an empty secret field
keeps the stored one.
"""

from __future__ import annotations

from werkzeug.datastructures import MultiDict
from wtforms import (
    BooleanField,
    Form,
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    ValidationError,
)

from app.models import OffsiteTarget
from app.services import offsite_targets as targets
from app.services.offsite_targets import ADDRESSING, ENCRYPTIONS, TargetError, TargetSettings
from app.services.sealing import SealError, check_recipient

MAX_FIELD = 4096  # longer than any valid value: refused before any other check
JSON_FIELDS = {
    "name": str,
    "endpoint": str,
    "region": str,
    "bucket": str,
    "prefix": str,
    "addressing": str,
    "access_key": str,
    "secret_key": str,
    "encryption": str,
    "recipient": str,
    "passphrase": str,
    "keep_last": int,
    "enabled": bool,
}


class OffsiteTargetForm(Form):
    name = StringField("Name")
    endpoint = StringField("Endpoint URL")
    region = StringField("Region", default="us-east-1")
    bucket = StringField("Bucket")
    prefix = StringField("Prefix")
    addressing = SelectField(
        "Addressing", choices=[SelectChoice(key, label) for key, label in ADDRESSING.items()], default="path"
    )
    access_key = StringField("Access key")
    secret_key = PasswordField("Secret key")
    encryption = RadioField(
        "Encryption", choices=[SelectChoice(key, label) for key, label in ENCRYPTIONS.items()], default="age"
    )
    recipient = StringField("Age public key")
    passphrase = PasswordField("Passphrase")
    keep_last = StringField("Keep last")
    enabled = BooleanField("Upload every backup to this target", default=True)

    def __init__(self, formdata=None, *, db=None, stored: OffsiteTarget | None = None, **kwargs) -> None:
        super().__init__(formdata, **kwargs)
        self.db = db
        self.stored = stored
        self.settings: TargetSettings | None = None

    def validate(self, extra_validators=None) -> bool:
        for field in self:
            if isinstance(field.data, str) and len(field.data) > MAX_FIELD:
                field.data = field.data[:MAX_FIELD]
                field.errors = [f"Too long (at most {MAX_FIELD} characters here)."]
        if any(field.errors for field in self):
            return False
        if not super().validate(extra_validators):
            return False
        self.settings = self._settings()
        return self.settings is not None

    def _check(self, field, check, *args):
        try:
            return check(*args)
        except (TargetError, SealError) as exc:
            field = getattr(self, getattr(exc, "field", ""), None) or field  # the field the error is about
            field.errors = [*field.errors, str(exc)] if isinstance(field.errors, list) else [str(exc)]
            return None

    def _settings(self) -> TargetSettings | None:
        values = {
            "name": self._check(self.name, targets.check_name, self.name.data),
            "endpoint": self._check(self.endpoint, targets.check_endpoint, self.endpoint.data),
            "region": self._check(self.region, targets.check_region, self.region.data),
            "bucket": self._check(self.bucket, targets.check_bucket, self.bucket.data),
            "prefix": self._check(self.prefix, targets.check_prefix, self.prefix.data),
            "keep_last": self._check(self.keep_last, targets.check_keep_last, self.keep_last.data),
            "access_key": self._check(
                self.access_key, targets.check_key, "access_key", self.access_key.data, "access key"
            ),
        }
        stored = self.stored
        secret = self.secret_key.data or ""
        if not secret and stored is not None:
            values["secret_key"] = stored.secret_key
        else:
            values["secret_key"] = self._check(self.secret_key, targets.check_key, "secret_key", secret, "secret key")
        values["recipient"] = values["passphrase"] = None
        if self.encryption.data == "age":
            values["recipient"] = self._check(self.recipient, check_recipient, self.recipient.data or "")
        else:
            phrase = self.passphrase.data or ""
            if not phrase and stored is not None and stored.encryption == "passphrase":
                values["passphrase"] = stored.passphrase
            else:
                values["passphrase"] = self._check(self.passphrase, targets.check_passphrase, phrase)
        if values["name"] and self.db is not None and targets.name_taken(self.db, values["name"], stored and stored.id):
            self.name.errors = [*self.name.errors, f"A target named “{values['name']}” exists already."]
            values["name"] = None
        if values["endpoint"] and values["bucket"] and self.addressing.data == "virtual":
            # The host connected to is "<bucket>.<endpoint host>": check that one too.
            self._check(self.bucket, targets.check_virtual_host, values["endpoint"], values["bucket"])
        if values["endpoint"] and values["bucket"] and values["prefix"] is not None and self.db is not None:
            other = targets.same_place(
                self.db, values["endpoint"], values["bucket"], values["prefix"], stored and stored.id
            )
            if other is not None:
                self.prefix.errors = [
                    *self.prefix.errors,
                    f"The target “{other.name}” already keeps its copies in this bucket and prefix: give this one "
                    "its own prefix, or each would overwrite and prune the other's copies.",
                ]
        if any(field.errors for field in self):
            return None
        return TargetSettings(
            addressing=self.addressing.data,
            encryption=self.encryption.data,
            enabled=bool(self.enabled.data),
            **values,
        )

    def validate_addressing(self, field) -> None:
        if field.data not in ADDRESSING:
            raise ValidationError("Choose path style or virtual host.")

    def validate_encryption(self, field) -> None:
        if field.data not in ENCRYPTIONS:
            raise ValidationError("Choose an age public key or a passphrase.")

    @classmethod
    def for_target(cls, target: OffsiteTarget, db) -> OffsiteTargetForm:
        """The form as shown for an edit: every stored value but the secrets."""
        form = cls(db=db, stored=target)
        for name in ("name", "endpoint", "region", "bucket", "prefix", "addressing", "access_key", "encryption"):
            getattr(form, name).data = getattr(target, name)
        form.recipient.data = target.recipient or ""
        form.keep_last.data = "" if target.keep_last is None else str(target.keep_last)
        form.enabled.data = target.enabled
        return form


def target_formdata_from_json(payload, partial: bool = False) -> tuple[MultiDict | None, dict[str, list[str]]]:
    """Check a JSON body's shape; ``partial`` (a PUT) lets the secrets be left out to keep them."""
    if not isinstance(payload, dict):
        return None, {"json": ['Send a JSON object, e.g. {"name": "B2", "endpoint": "https://...", ...}.']}
    errors: dict[str, list[str]] = {}
    data = MultiDict()
    for key, value in payload.items():
        expected = JSON_FIELDS.get(key)
        if expected is None:
            errors[str(key)[:50]] = ["Unknown field."]
        elif value is None and key in ("prefix", "keep_last", "recipient", "passphrase"):
            continue
        elif expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            errors[key] = ["Must be a whole number or null."]
        elif expected is not int and not isinstance(value, expected):
            errors[key] = [f"Must be {'true or false' if expected is bool else 'a string'}."]
        elif expected is bool:
            if value:
                data[key] = "y"
        else:
            data[key] = str(value)
    required = ["name", "endpoint", "bucket", "access_key"]
    if not partial:
        required.append("secret_key")
    for key in required:
        if key not in payload and key not in errors:
            errors[key] = ["This field is required."]
    if "enabled" not in payload:
        data["enabled"] = "y"
    return (None if errors else data), errors
