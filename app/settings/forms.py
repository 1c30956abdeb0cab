"""The forms only the Settings pages use (restore confirmation, upload); schedules: app/forms/schedule.py."""

from __future__ import annotations

from werkzeug.datastructures import FileStorage
from wtforms import FileField, Form, HiddenField, PasswordField, StringField, TextAreaField, ValidationError


class RestoreForm(Form):
    """The restore confirmation: the user types the backup's name."""

    confirm = StringField("Type the backup name to confirm")

    def __init__(self, formdata=None, *, name: str, **kwargs) -> None:
        super().__init__(formdata, **kwargs)
        self.backup_name = name

    def validate_confirm(self, field) -> None:
        if (field.data or "").strip() != self.backup_name:
            raise ValidationError(f"Type the backup's exact name, {self.backup_name}, to confirm the restore.")


class UploadForm(Form):
    """Upload a backup file to check and keep (restoring it is a separate step)."""

    file = FileField("Backup file")

    def validate_file(self, field) -> None:
        if not isinstance(field.data, FileStorage) or not field.data.filename:
            raise ValidationError("Choose a backup file to upload.")


class FetchForm(Form):
    """Bring back an off-site copy: which object, and the key that opens it (never stored).

    ``encryption`` is how the copy is expected to be sealed (its catalogue entry, else the
    target's setting): that field is asked for first, the other one stays available, since a
    target's encryption may have changed since the copy was made.
    """

    key = HiddenField("Remote copy")
    identity = TextAreaField("Age private key")
    passphrase = PasswordField("Passphrase")

    def __init__(self, formdata=None, *, encryption: str, **kwargs) -> None:
        super().__init__(formdata, **kwargs)
        self.encryption = encryption

    @property
    def expected(self):
        """The field this copy is expected to open with."""
        return self.identity if self.encryption == "age" else self.passphrase

    @property
    def given(self):
        """The field the user filled (the expected one when both are)."""
        if (self.expected.data or "").strip():
            return self.expected
        return self.passphrase if self.expected is self.identity else self.identity

    def validate_key(self, field) -> None:
        if not field.data:
            raise ValidationError("Choose a remote copy.")

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        text = self.given.data or ""
        if not text.strip():
            self.expected.errors = (
                ["Paste the private key the copy was sealed to."]
                if self.encryption == "age"
                else ["Type the passphrase the copy was sealed with."]
            )
            return False
        if len(text) > 16_384:
            self.given.errors = ["That is too long to be an age private key or a passphrase."]
            return False
        return valid
