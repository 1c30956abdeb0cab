"""The forms only the Settings pages use (restore confirmation, upload); schedules: app/forms/schedule.py."""

from __future__ import annotations

from werkzeug.datastructures import FileStorage
from wtforms import FileField, Form, HiddenField, PasswordField, StringField, ValidationError


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
    """Bring back an off-site copy: which object, and the key that opens it (never stored)."""

    key = HiddenField("Remote copy")
    secret = PasswordField("Key that opens the copy")

    def validate_key(self, field) -> None:
        if not field.data:
            raise ValidationError("Choose a remote copy.")

    def validate_secret(self, field) -> None:
        if not (field.data or "").strip():
            raise ValidationError("Paste the key the copy was sealed to, or type its passphrase.")
        if len(field.data) > 16_384:
            raise ValidationError("That is too long to be an age identity or a passphrase.")
