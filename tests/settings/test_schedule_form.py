"""The schedule form: saving each strategy, field errors that keep the input, strategy switch, cron help."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from app.models import ScheduleConfig
from app.services.schedules import Schedule, load_schedule, save_schedule
from tests.settings.html_tree import first_element, oob_toast, parse

TASK = "backup_db"
START = Schedule("interval", every_hours=12)
BERLIN = ZoneInfo("Europe/Berlin")

VALID = {
    "disabled": ({"mode": "disabled"}, Schedule("disabled")),
    "daily": ({"mode": "daily", "time": "02:30"}, Schedule("daily", time="02:30")),
    "weekly": (
        {"mode": "weekly", "time": "04:15", "weekdays": ["thu", "mon"]},
        Schedule("weekly", time="04:15", weekdays=("mon", "thu")),
    ),
    "cron": ({"mode": "cron", "cron": "30 2 * * 1-5"}, Schedule("cron", cron="30 2 * * 1-5")),
    "interval": ({"mode": "interval", "every_hours": "6"}, Schedule("interval", every_hours=6)),
}


def stored(db) -> tuple[Schedule, int | None]:
    schedule, row = load_schedule(db, TASK)
    return schedule, None if row is None else row.version


@pytest.fixture
def saved(db):
    """A schedule already saved, so that every test can see whether it changed."""
    save_schedule(db, TASK, START)
    return stored(db)


@pytest.mark.parametrize("strategy", VALID)
def test_saving_a_valid_schedule_with_htmx_stores_it_and_announces_the_change(client, db, htmx, saved, strategy):
    data, expected = VALID[strategy]

    response = client.post("/settings/schedule/backup_db", data=data, headers=htmx)
    fragment = parse(response.get_data(as_text=True))

    assert response.status_code == 200
    assert stored(db) == (expected, saved[1] + 1)
    assert first_element(fragment).attrs["id"] == "schedule-form-backup_db"
    assert "schedule-changed" in response.headers["HX-Trigger"]
    toast = oob_toast(fragment, "toasts")
    assert toast is not None
    assert "Database backup schedule saved" in toast.text
    assert fragment.find("div", class_="error-summary") is None
    selected = [
        option.attrs["value"]
        for option in fragment.by_id("backup_db-mode").find_all("option")
        if "selected" in option.attrs
    ]
    assert selected == [expected.mode]


# (form data, id of the invalid control, part of its message, the value the user typed)
INVALID = {
    "cron minute 61": ({"mode": "cron", "cron": "61 * * * *"}, "cron", "minute", "61 * * * *"),
    "cron four fields": ({"mode": "cron", "cron": "* * * *"}, "cron", "5 fields", "* * * *"),
    "cron empty": ({"mode": "cron", "cron": ""}, "cron", "Enter a cron expression", ""),
    "time 24:00": ({"mode": "daily", "time": "24:00"}, "time", "hour must be from 00 to 23", "24:00"),
    "time 12:60": ({"mode": "weekly", "time": "12:60", "weekdays": ["mon"]}, "time", "minutes", "12:60"),
    "time words": ({"mode": "daily", "time": "noon"}, "time", "HH:MM", "noon"),
    "every 169 hours": ({"mode": "interval", "every_hours": "169"}, "every_hours", "from 1 to 168", "169"),
    "every 0 hours": ({"mode": "interval", "every_hours": "0"}, "every_hours", "from 1 to 168", "0"),
    "every abc hours": ({"mode": "interval", "every_hours": "abc"}, "every_hours", "from 1 to 168", "abc"),
    "every 1.5 hours": ({"mode": "interval", "every_hours": "1.5"}, "every_hours", "whole number", "1.5"),
    "every ² hours": ({"mode": "interval", "every_hours": "²"}, "every_hours", "whole number", "²"),
    "cron never runs": ({"mode": "cron", "cron": "0 3 31 2 *"}, "cron", "matches no date", "0 3 31 2 *"),
}


@pytest.mark.parametrize("case", INVALID)
def test_an_invalid_field_is_marked_with_its_message_and_keeps_the_input(client, db, htmx, saved, case):
    data, field_name, message, typed = INVALID[case]
    field_id = f"{TASK}-{field_name}"  # element ids carry the task id; field names do not

    response = client.post("/settings/schedule/backup_db", data=data, headers=htmx)
    fragment = parse(response.get_data(as_text=True))

    assert response.status_code == 422
    assert stored(db) == saved
    assert first_element(fragment).attrs["id"] == "schedule-form-backup_db"
    control = fragment.by_id(field_id)
    assert control.attrs.get("value", "") == typed
    assert control.attrs.get("aria-invalid") == "true"
    field = control.closest(class_="field")
    assert "has-error" in field.classes
    error = field.find("p", class_="field-error")
    assert message in error.text
    assert error.attrs["id"] in control.attrs["aria-describedby"].split()
    summary = fragment.find("div", class_="error-summary")
    assert summary.find("a", href=f"#{field_id}") is not None
    assert "not saved" in oob_toast(fragment, "alerts").text
    assert "HX-Trigger" not in response.headers


def test_weekly_without_weekdays_marks_the_weekday_group(client, db, htmx, saved):
    response = client.post("/settings/schedule/backup_db", data={"mode": "weekly", "time": "03:00"}, headers=htmx)
    fragment = parse(response.get_data(as_text=True))

    assert response.status_code == 422
    assert stored(db) == saved
    group = fragment.by_id("backup_db-weekdays")
    assert group.tag == "fieldset"
    assert "has-error" in group.classes
    assert "Choose at least one weekday" in group.find("p", class_="field-error").text
    assert fragment.find("div", class_="error-summary").find("a", href="#backup_db-weekdays") is not None
    assert fragment.by_id("backup_db-time").attrs["value"] == "03:00"


def test_an_unknown_strategy_is_refused_on_the_strategy_select(client, db, htmx, saved):
    response = client.post("/settings/schedule/backup_db", data={"mode": "hourly", "time": "03:00"}, headers=htmx)
    fragment = parse(response.get_data(as_text=True))

    assert response.status_code == 422
    assert stored(db) == saved
    select = fragment.by_id("backup_db-mode")
    assert select.attrs.get("aria-invalid") == "true"
    field = select.closest(class_="field")
    assert "has-error" in field.classes
    assert "Choose one of" in field.find("p", class_="field-error").text
    assert fragment.find("div", class_="error-summary").find("a", href="#backup_db-mode") is not None


@pytest.mark.parametrize(
    ("data", "field_id"),
    [
        ({}, "mode"),
        ({"mode": "daily"}, "time"),
        ({"mode": "weekly", "weekdays": "mon"}, "time"),
        ({"mode": "interval"}, "every_hours"),
    ],
)
def test_a_field_the_strategy_needs_but_was_not_sent_is_required_not_defaulted(client, db, htmx, saved, data, field_id):
    # Without this, the form's defaults (disabled, 02:00, every 24 hours) would be saved.
    response = client.post("/settings/schedule/backup_db", data=data, headers=htmx)
    fragment = parse(response.get_data(as_text=True))

    assert response.status_code == 422
    assert stored(db) == saved
    field = fragment.by_id(f"{TASK}-{field_id}").closest(class_="field")
    assert "This field is required." in field.find("p", class_="field-error").text


def test_a_refused_schedule_leaves_the_stored_version_alone(client, db, htmx, saved):
    for data, *_ in INVALID.values():
        client.post("/settings/schedule/backup_db", data=data, headers=htmx)

    with db.session() as session:
        row = session.get(ScheduleConfig, TASK)
    assert (row.mode, row.every_hours, row.version) == ("interval", 12, saved[1])


def test_invalid_post_without_htmx_rerenders_the_full_page_with_422(client, db, saved):
    response = client.post("/settings/schedule/backup_db", data={"mode": "cron", "cron": "61 * * * *"})
    body = response.get_data(as_text=True)
    page = parse(body)

    assert response.status_code == 422
    assert "<html" in body
    assert stored(db) == saved
    assert page.by_id("backup_db-cron").attrs["value"] == "61 * * * *"
    assert page.find("div", class_="error-summary").find("a", href="#backup_db-cron") is not None
    assert "not saved" in page.by_id("alerts").text
    assert page.by_id("backups-block")  # the rest of the page is there too


def test_valid_post_without_htmx_redirects_and_flashes(client, db, saved):
    response = client.post("/settings/schedule/backup_db", data={"mode": "daily", "time": "05:45"})

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/settings")
    assert stored(db)[0] == Schedule("daily", time="05:45")
    page = parse(client.get("/settings").get_data(as_text=True))
    assert "Database backup schedule saved" in page.by_id("toasts").text
    assert page.by_id("backup_db-time").attrs["value"] == "05:45"


@pytest.mark.parametrize(
    ("data", "shown", "hidden"),
    [
        ({"mode": "cron", "cron": ""}, "cron", "every_hours"),
        ({"mode": "weekly", "time": "03:00"}, "weekdays", "cron"),
        ({"mode": "interval", "every_hours": "7"}, "every_hours", "time"),
    ],
)
def test_choose_without_javascript_shows_the_strategy_fields_and_saves_nothing(client, db, saved, data, shown, hidden):
    response = client.post("/settings/schedule/backup_db", data=data | {"action": "choose"})
    page = parse(response.get_data(as_text=True))

    assert response.status_code == 200
    assert stored(db) == saved
    fields = page.by_id("schedule-fields-backup_db")
    assert fields.find(id=f"{TASK}-{shown}") is not None
    assert fields.find(id=f"{TASK}-{hidden}") is None
    assert fields.find(class_="has-error") is None  # choosing is not submitting: no errors yet


def test_a_time_without_leading_zero_is_stored_as_hh_mm(client, db, htmx):
    # <input type="time"> shows nothing for "2:05", so the stored value must be "02:05".
    client.post("/settings/schedule/backup_db", data={"mode": "daily", "time": " 2:05 "}, headers=htmx)

    assert stored(db)[0] == Schedule("daily", time="02:05")
    page = parse(client.get("/settings").get_data(as_text=True))
    assert page.by_id("backup_db-time").attrs["value"] == "02:05"


def test_choose_saves_nothing_even_when_no_schedule_exists(client, db):
    client.post("/settings/schedule/backup_db", data={"mode": "daily", "time": "01:00", "action": "choose"})

    assert stored(db) == (Schedule("disabled"), None)


def test_strategy_switch_to_cron_shows_the_typed_expression_and_its_preview(client, htmx):
    response = client.get("/settings/schedule/backup_db/fields?mode=cron&cron=15+4+*+*+*", headers=htmx)
    fragment = parse(response.get_data(as_text=True))

    assert response.status_code == 200
    assert fragment.by_id("backup_db-cron").attrs["value"] == "15 4 * * *"
    preview = fragment.by_id("schedule-preview-backup_db")
    assert "04:15" in preview.find("p", class_="preview-text").text
    assert len(preview.find_all("time")) == 5


def test_strategy_switch_away_from_cron_keeps_the_expression_in_a_hidden_input(client, htmx):
    response = client.get("/settings/schedule/backup_db/fields?mode=daily&cron=15+4+*+*+*&time=03:10", headers=htmx)
    fragment = parse(response.get_data(as_text=True))

    assert fragment.by_id("backup_db-time").attrs["value"] == "03:10"
    assert fragment.find(id="backup_db-cron") is None
    assert fragment.find("input", type="hidden", name="cron").attrs["value"] == "15 4 * * *"


def test_strategy_switch_to_weekly_keeps_the_checked_weekdays(client, htmx):
    url = "/settings/schedule/backup_db/fields?mode=weekly&time=03:10&weekdays=mon&weekdays=fri"
    fragment = parse(client.get(url, headers=htmx).get_data(as_text=True))

    boxes = fragment.by_id("backup_db-weekdays").find_all("input", type="checkbox")
    assert len(boxes) == 7
    assert [box.attrs["value"] for box in boxes if "checked" in box.attrs] == ["mon", "fri"]


def test_strategy_switch_to_an_unknown_mode_shows_the_disabled_fields(client, htmx):
    fragment = parse(client.get("/settings/schedule/backup_db/fields?mode=hourly", headers=htmx).get_data(as_text=True))

    assert "No automatic backups" in fragment.by_id("schedule-fields-backup_db").text


def preview_times(fragment) -> list[datetime]:
    """The listed runs as Europe/Berlin wall-clock times (the attribute may use any offset)."""
    items = fragment.by_id("schedule-preview-backup_db").find_all("li")
    assert all(item.elements and item.elements[0].tag == "time" for item in items)
    moments = [datetime.fromisoformat(item.elements[0].attrs["datetime"]) for item in items]
    assert all(moment.utcoffset() is not None for moment in moments)
    return [moment.astimezone(BERLIN) for moment in moments]


def test_cron_preview_describes_the_expression_and_lists_the_next_five_runs(client):
    response = client.get("/settings/schedule/backup_db/preview?mode=cron&cron=30+2+*+*+1-5")
    fragment = parse(response.get_data(as_text=True))

    assert response.status_code == 200
    text = fragment.find("p", class_="preview-text").text
    assert "02:30" in text
    assert "Monday through Friday" in text
    times = preview_times(fragment)
    assert len(times) == 5
    assert times == sorted(times)
    assert all((moment.hour, moment.minute) == (2, 30) and moment.weekday() < 5 for moment in times)
    assert "Europe/Berlin" in fragment.text


def test_cron_preview_of_a_bad_expression_shows_the_error_and_no_runs(client):
    fragment = parse(
        client.get("/settings/schedule/backup_db/preview?mode=cron&cron=61+*+*+*+*").get_data(as_text=True)
    )

    error = fragment.by_id("schedule-preview-backup_db").find("p", class_="preview-error")
    assert error is not None
    assert "minute" in error.text
    assert "61" in error.text
    assert fragment.find_all("li") == []


@pytest.mark.parametrize("weekday", ["0", "7", "sun"])
def test_cron_preview_reads_weekday_zero_and_seven_as_sunday_like_crontab(client, weekday):
    fragment = parse(
        client.get(f"/settings/schedule/backup_db/preview?mode=cron&cron=0+3+*+*+{weekday}").get_data(as_text=True)
    )

    assert "Sunday" in fragment.find("p", class_="preview-text").text
    times = preview_times(fragment)
    assert len(times) == 5
    assert all(moment.weekday() == 6 and moment.hour == 3 for moment in times)


def test_cron_preview_of_an_expression_that_never_matches_says_so(client):
    fragment = parse(
        client.get("/settings/schedule/backup_db/preview?mode=cron&cron=0+3+31+2+*").get_data(as_text=True)
    )

    assert "matches no date" in fragment.find("p", class_="preview-error").text
    assert fragment.find_all("li") == []


def test_weekly_preview_lists_the_next_five_runs_on_the_chosen_days(client):
    response = client.get("/settings/schedule/backup_db/preview?mode=weekly&time=03:15&weekdays=mon&weekdays=thu")
    preview = parse(response.get_data(as_text=True)).by_id("schedule-preview-backup_db")

    assert preview.find("p", class_="preview-text").text == "Every Monday and Thursday at 03:15"
    moments = [
        datetime.fromisoformat(item.attrs["datetime"]).astimezone(ZoneInfo("Europe/Berlin"))
        for item in preview.find_all("time")
    ]
    assert len(moments) == 5
    assert {moment.strftime("%a %H:%M") for moment in moments} <= {"Mon 03:15", "Thu 03:15"}
    assert moments == sorted(moments)


def test_daily_preview_shows_the_time_error_instead_of_runs(client):
    response = client.get("/settings/schedule/backup_db/preview?mode=daily&time=25:00")
    preview = parse(response.get_data(as_text=True)).by_id("schedule-preview-backup_db")

    assert preview.find("p", class_="preview-error").text == "The hour must be from 00 to 23."
    assert preview.find_all("time") == []


def test_interval_preview_describes_it_and_points_to_the_status_for_the_next_run(client):
    response = client.get("/settings/schedule/backup_db/preview?mode=interval&every_hours=6")
    preview = parse(response.get_data(as_text=True)).by_id("schedule-preview-backup_db")

    assert preview.find("p", class_="preview-text").text == "Every 6 hours"
    assert "Counted from when the schedule is saved" in preview.text
    assert preview.find_all("time") == []


def test_saved_daily_schedule_shows_its_preview_when_the_page_loads(client, db):
    save_schedule(db, "backup_db", Schedule("daily", time="04:30"))
    preview = parse(client.get("/settings").get_data(as_text=True)).by_id("schedule-preview-backup_db")

    assert preview.find("p", class_="preview-text").text == "Every day at 04:30"
    assert len(preview.find_all("time")) == 5


@pytest.mark.parametrize(
    ("query", "field_id", "says"),
    [
        ("mode=daily&time=02:30", "time", ["Europe/Berlin", "02:30 runs at 03:00", "repeated hour runs once"]),
        ("mode=cron&cron=30+2+*+*+*", "cron", ["Europe/Berlin", "02:30 runs at 03:00", "* in the minute or hour"]),
    ],
)
def test_the_field_hint_says_what_happens_when_clocks_change(client, htmx, query, field_id, says):
    fragment = parse(client.get(f"/settings/schedule/backup_db/fields?{query}", headers=htmx).get_data(as_text=True))

    hint = fragment.by_id(f"{TASK}-{field_id}").closest(class_="field").find("p", class_="hint").text
    assert all(words in hint for words in says)


def test_cron_preview_text_shows_that_a_star_day_field_means_and(client):
    fragment = parse(
        client.get("/settings/schedule/backup_db/preview?mode=cron&cron=0+0+*/2+*+1").get_data(as_text=True)
    )

    assert "only those days that fall on Monday" in fragment.find("p", class_="preview-text").text
    assert all(moment.weekday() == 0 and moment.day % 2 == 1 for moment in preview_times(fragment))
