"""The schedule form: the one place schedule input is validated, for the pages, the JSON API and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime

from werkzeug.datastructures import MultiDict
from wtforms import Form, SelectChoice, SelectField, SelectMultipleField, StringField, ValidationError
from wtforms.meta import DefaultMeta
from wtforms.widgets import CheckboxInput, ListWidget

from app.services.crontab import NEVER_RUNS
from app.services.schedules import (
    MAX_HOURS,
    MIN_HOURS,
    MODE_FIELDS,
    MODES,
    WEEKDAYS,
    Schedule,
    ScheduleError,
    build_trigger,
    parse_time_of_day,
)

JSON_TYPES = {"mode": str, "time": str, "cron": str, "every_hours": int, "weekdays": list}
MAX_TEXT = 200
REQUIRED = "This field is required."


class CheckboxListField(SelectMultipleField):
    """Several choices as native checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def pre_validate(self, form) -> None:
        """Name the unknown values in the order sent, and the valid ones."""
        valid = [choice.value for choice in self.choices]
        unknown = [value for value in self.data or [] if value not in valid]
        if unknown:
            names = ", ".join(repr(value) for value in unknown)
            raise ValidationError(f"Not a weekday: {names}. Use: {', '.join(valid)}.")


class TaskIdMeta(DefaultMeta):
    """Element ids start with ``id_prefix`` (one form per task on a page); field names do not."""

    id_prefix = ""

    def bind_field(self, form, unbound_field, options):
        if self.id_prefix:
            options.setdefault("id", self.id_prefix + options["name"])
        return unbound_field.bind(form=form, **options)


class ScheduleForm(Form):
    """A task's schedule; only the chosen strategy's fields are read and required."""

    Meta = TaskIdMeta

    mode = SelectField("Strategy", choices=[SelectChoice(v, label) for v, label in MODES.items()], default="disabled")
    time = StringField("Time of day", default="02:00")
    weekdays = CheckboxListField("Weekdays", choices=[SelectChoice(v, label) for v, label in WEEKDAYS.items()])
    cron = StringField("Cron expression")
    every_hours = StringField("Every N hours", default="24")

    def validate(self, extra_validators=None) -> bool:
        """Validate the strategy, then only the fields that strategy uses."""
        if not self.mode.raw_data:
            self.mode.errors = [REQUIRED]
            return False
        if not self.mode.validate(self):
            self.mode.errors[:] = ["Choose one of: " + ", ".join(MODES.values()) + "."]
            return False
        valid = True
        for name in MODE_FIELDS[self.mode.data]:
            # A field that was not sent would keep its default (02:00, every 24 hours) and
            # save a schedule nobody chose. Unchecked weekday boxes send nothing: their own
            # rule says "choose at least one".
            if name != "weekdays" and not self[name].raw_data:
                self[name].errors = [REQUIRED]
                valid = False
                continue
            inline = getattr(type(self), f"validate_{name}")
            valid = self[name].validate(self, [inline]) and valid
        return valid

    def validate_time(self, field) -> None:
        if not (field.data or "").isascii():
            raise ValidationError("Use the digits 0-9, e.g. 02:30.")
        try:
            parse_time_of_day(field.data or "")
        except ScheduleError as exc:
            raise ValidationError(str(exc)) from None

    def validate_weekdays(self, field) -> None:
        if not field.data:
            raise ValidationError("Choose at least one weekday.")

    def validate_cron(self, field) -> None:
        text = (field.data or "").strip()
        if not text:
            raise ValidationError("Enter a cron expression, e.g. 30 2 * * 1-5.")
        if len(text) > MAX_TEXT:
            raise ValidationError(f"A cron expression is at most {MAX_TEXT} characters.")
        if not text.isascii():
            # Python reads "٢" as 2, but crontab and other cron tools would not read what we store.
            raise ValidationError("Use plain ASCII: the digits 0-9, letters, and * , - /.")
        try:
            trigger = build_trigger(Schedule("cron", cron=text), "UTC")
        except ScheduleError as exc:
            raise ValidationError(str(exc)) from None
        if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
            raise ValidationError(NEVER_RUNS)

    def validate_every_hours(self, field) -> None:
        message = f"Enter a whole number of hours from {MIN_HOURS} to {MAX_HOURS}."
        text = str(field.data if field.data is not None else "").strip()
        # ASCII digits only: int() also reads "٦", which other tools would not.
        if not (text.isascii() and text.isdecimal()) or not MIN_HOURS <= int(text) <= MAX_HOURS:
            raise ValidationError(message)

    def active_fields(self) -> tuple[str, ...]:
        """Names of the fields the chosen strategy uses."""
        return MODE_FIELDS.get(self.mode.data, ())

    def schedule(self) -> Schedule:
        """The validated schedule, with other strategies' fields dropped."""
        every_hours = str(self.every_hours.data or "").strip()
        time = (self.time.data or "").strip() or None
        if self.mode.data in ("daily", "weekly"):
            time = "{:02d}:{:02d}".format(*parse_time_of_day(time))  # "2:05" is stored as "02:05"
        return Schedule(
            mode=self.mode.data,
            time=time,
            weekdays=tuple(self.weekdays.data or ()),
            cron=(self.cron.data or "").strip() or None,
            every_hours=int(every_hours) if every_hours.isdecimal() else None,
        ).normalized()

    @classmethod
    def for_task(cls, task_id: str, formdata=None) -> ScheduleForm:
        """The form of one task's section: its element ids start with the task id."""
        return cls(formdata, meta={"id_prefix": f"{task_id}-"})

    @classmethod
    def from_schedule(cls, schedule: Schedule, task_id: str | None = None) -> ScheduleForm:
        """A form filled with a saved schedule (other fields keep their defaults)."""
        form = cls.for_task(task_id) if task_id else cls()
        form.mode.data = schedule.mode
        if schedule.time:
            form.time.data = schedule.time
        form.weekdays.data = list(schedule.weekdays)
        form.cron.data = schedule.cron or ""
        if schedule.every_hours:
            form.every_hours.data = str(schedule.every_hours)
        return form


def formdata_from_json(payload) -> tuple[MultiDict | None, dict[str, list[str]]]:
    """Check a JSON body's shape and types; return form data, or errors by field."""
    if not isinstance(payload, dict):
        return None, {"json": ['Send a JSON object, e.g. {"mode": "daily", "time": "02:30"}.']}
    errors: dict[str, list[str]] = {}
    data = MultiDict()
    for key, value in payload.items():
        expected = JSON_TYPES.get(key)
        if expected is None:
            errors[str(key)[:50]] = ["Unknown field."]
        elif value is None:
            continue
        elif expected is int and isinstance(value, float) and value.is_integer():
            data[key] = str(int(value))  # 6.0 is six hours, as JSON numbers have no int type
        elif not isinstance(value, expected) or isinstance(value, bool):
            errors[key] = [f"Must be {_type_name(expected)}."]
        elif expected is list:
            if not all(isinstance(item, str) for item in value):
                errors[key] = ['Must be a list of weekday names such as ["mon", "thu"].']
            else:
                data.setlist(key, value)
        else:
            data[key] = str(value)
    if "mode" not in payload and "mode" not in errors:
        errors["mode"] = ["This field is required."]
    return (None if errors else data), errors


def _type_name(expected: type) -> str:
    return {str: "a string", int: "a whole number", list: "a list"}[expected]
