"""Hostile input never breaks the schedule endpoints, never changes state when refused, never reaches HTML raw."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from app.services.schedules import load_schedule
from tests.security.support import changeable_state, wait_for_runs_to_finish
from tests.settings.html_tree import parse

API_SCHEDULE = "/api/v1/settings/scheduler/backup"
FIELDS = ("mode", "time", "weekdays", "cron", "every_hours")
MODES = ("disabled", "daily", "weekly", "cron", "interval")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SCRIPT = "<script>alert(1)</script>"
INJECTED_ID = "injected-by-test"
INJECTED_TAGS = {"b", "img"}  # tags the templates never use, so any of them came from input
NASTY = [
    SCRIPT,
    '"><script>alert(1)</script>',
    f"'><img src=x onerror=alert(1) id={INJECTED_ID}>",
    f'" autofocus onfocus="alert(1)" id="{INJECTED_ID}',
    f"<b id={INJECTED_ID}>bold</b>",
    "{{ 7 * 7 }}",
    "{% raw %}",
    "${7*7}",
    "\x00",
    "02:30\x00",
    "\ud800",  # a lone surrogate: valid in JSON ("\\ud800"), not in UTF-8
    "\u202e",
    "²",
    "٣",
    "١٢:٣٠",
    "𝟗",
    "²4",
    "24:00",
    "23:60",
    "-1",
    "1e3",
    "0x10",
    "NaN",
    "Infinity",
    "",
    " ",
    "\t\n\r",
    "../../etc/passwd",
    "* * * * *",
    "0 0 31 2 *",
    "*/0 * * * *",
    "1-2-3 * * * *",
    "99999999999999999999 * * * *",
    "* * * * * * * *",
    "mon,tue",
]
any_text = st.text(st.characters(codec="utf-8"), max_size=40)
control_text = st.text(st.characters(max_codepoint=0x1F), max_size=20)
long_text = st.builds(
    lambda piece, count: piece * count, st.sampled_from(["9", "<", SCRIPT, "\x00", "* "]), st.integers(1, 10_000 // 25)
)
unicode_digits = st.text(st.sampled_from("0123456789²³¹٣١٢٠𝟗߁৩"), min_size=1, max_size=4)
# Five fields, so the cron parser gets as far as quoting the bad field back in its message.
cron_shaped = st.lists(
    st.sampled_from(["*", "0", "*/5", "1-5", "mon", SCRIPT, "<b>", "&amp;", "²", "\x00"]), min_size=5, max_size=5
).map(" ".join)
# Any text, often shaped to break a parser or to break out of HTML.
hostile_text = st.one_of(
    st.sampled_from(NASTY),
    unicode_digits,
    cron_shaped,
    any_text,
    control_text,
    long_text,
    st.builds(lambda before, payload, after: before + payload + after, any_text, st.sampled_from(NASTY[:5]), any_text),
)
hostile_number = st.one_of(
    st.integers(-(10**40), 10**40),
    st.integers(-5, 200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 168, 169, -1, 2**63, -(2**63), 1.0, 24.0, 1e308]),
)
json_scalar = st.one_of(st.none(), st.booleans(), hostile_number, hostile_text)
json_value = st.recursive(
    json_scalar,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(any_text, children, max_size=4)),
    max_leaves=8,
)
plausible = {
    "mode": st.sampled_from(MODES),
    "time": st.builds("{:02d}:{:02d}".format, st.integers(0, 25), st.integers(0, 61)),
    "weekdays": st.lists(st.sampled_from(DAYS), max_size=8),
    "cron": st.sampled_from(["30 2 * * 1-5", "0 3 * * *", "*/15 * * * *", "0 0 29 2 *", "0 4 1 1 mon"]),
    "every_hours": st.integers(-2, 170),
}
# Mostly-valid schedules, so that the "saved" branch is taken often, too.
schedules = st.one_of(
    st.just({"mode": "disabled"}),
    st.fixed_dictionaries({"mode": st.just("daily"), "time": plausible["time"]}),
    st.fixed_dictionaries({"mode": st.just("weekly"), "time": plausible["time"], "weekdays": plausible["weekdays"]}),
    st.fixed_dictionaries({"mode": st.just("cron"), "cron": plausible["cron"]}),
    st.fixed_dictionaries({"mode": st.just("interval"), "every_hours": plausible["every_hours"]}),
)
json_field = {name: st.one_of(strategy, json_value) for name, strategy in plausible.items()}
json_field["weekdays"] = st.one_of(json_field["weekdays"], st.lists(st.one_of(st.sampled_from(DAYS), json_value)))
unknown_keys = st.dictionaries(any_text.filter(lambda key: key not in FIELDS), json_value, max_size=2)
json_payloads = st.one_of(
    schedules,
    st.builds(lambda schedule, spoilt: schedule | spoilt, schedules, st.fixed_dictionaries({}, optional=json_field)),
    st.builds(lambda known, unknown: known | unknown, st.fixed_dictionaries({}, optional=json_field), unknown_keys),
    json_value,
)

text_without_surrogates = hostile_text.map(lambda text: text.encode("utf-8", "replace").decode("utf-8"))
form_field = {
    "mode": st.one_of(plausible["mode"], text_without_surrogates),
    "time": st.one_of(plausible["time"], text_without_surrogates),
    "weekdays": st.lists(st.one_of(st.sampled_from(DAYS), text_without_surrogates), max_size=8),
    "cron": st.one_of(plausible["cron"], text_without_surrogates),
    "every_hours": st.one_of(plausible["every_hours"].map(str), text_without_surrogates),
}


def as_form_values(schedule: dict) -> dict:
    """A JSON-shaped schedule as a browser would send it: strings, and a list for the checkboxes."""
    return {name: value if isinstance(value, list) else str(value) for name, value in schedule.items()}


form_payloads = st.one_of(
    schedules.map(as_form_values),
    st.builds(
        lambda schedule, spoilt: as_form_values(schedule) | spoilt,
        schedules,
        st.fixed_dictionaries({}, optional=form_field),
    ),
    st.fixed_dictionaries({}, optional=form_field),
)
extra_query_pairs = st.lists(
    st.tuples(st.one_of(st.sampled_from(FIELDS), text_without_surrogates), text_without_surrogates), max_size=4
)
# Mostly mode=cron, since only a cron expression reaches the preview (and its error message).
query_pairs = st.builds(
    lambda mode, cron, extra: [("mode", mode), ("cron", cron), *extra],
    st.one_of(st.just("cron"), st.sampled_from(MODES), text_without_surrogates),
    st.one_of(cron_shaped, text_without_surrogates),
    extra_query_pairs,
)
raw_query_strings = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=200)


def examples(count: int) -> settings:
    """``count`` examples, no per-example deadline (the first request renders templates), one app per test."""
    return settings(max_examples=count, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def stored(app) -> tuple[dict, int | None]:
    """The saved schedule and its version (the leader reconciles on a version change)."""
    schedule, row = load_schedule(app.extensions["db"], "backup_db")
    return schedule.as_dict(), None if row is None else row.version


def markup_problems(body: str) -> list[str]:
    """Signs that input reached the HTML unescaped."""
    problems = []
    if SCRIPT in body:
        problems.append("raw <script>alert(1)</script>")
    for element in parse(body).iter():
        if element.attrs.get("id") == INJECTED_ID or element.tag in INJECTED_TAGS:
            problems.append(f"injected element <{element.tag}>")
        if element.tag == "script" and not element.attrs.get("src"):
            problems.append("inline <script>")
        if any(name.startswith("on") for name in element.attrs):
            problems.append(f"event handler attribute on <{element.tag}>: {element.attrs}")
    return problems


def form_data(payload: dict) -> MultiDict:
    data = MultiDict()
    for name, value in payload.items():
        if isinstance(value, list):
            data.setlist(name, value)
        else:
            data[name] = value
    return data


# --- (a) the JSON API -------------------------------------------------------------------------


@pytest.mark.slow
@examples(250)
@given(payload=json_payloads)
def test_the_json_api_answers_200_or_400_with_errors_and_changes_the_schedule_only_on_200(app, payload):
    client = app.test_client()
    before = stored(app)

    response = client.post(API_SCHEDULE, json=payload)
    event(f"status {response.status_code}")

    assert response.status_code in (200, 400), response.get_data(as_text=True)
    body = response.get_json()
    if response.status_code == 400:
        assert isinstance(body["errors"], dict)
        assert body["errors"]
        assert all(isinstance(messages, list) and messages for messages in body["errors"].values())
        assert stored(app) == before
    else:
        assert stored(app)[0] == body["schedule"]
        assert body["schedule"]["mode"] in MODES


@pytest.mark.parametrize(
    "body",
    [
        "[" * 30_000 + "]" * 30_000,  # nesting deeper than Python's recursion limit, within 64 KiB
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        '{"every_hours": ' + "9" * 5_000 + "}",  # more digits than int() accepts
        '{"mode": "daily", "time": "02:30"',
        "\x00",
        "\xff\xfe",
        "",
        "null",
        '"daily"',
    ],
    ids=["deep-list", "deep-object", "huge-int", "truncated", "nul", "bad-utf8", "empty", "null", "string"],
)
def test_malformed_json_bodies_answer_400_and_change_nothing(app, client, body):
    before = stored(app)

    response = client.post(API_SCHEDULE, data=body.encode("latin-1", "replace"), content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["errors"]
    assert stored(app) == before


def test_a_non_json_body_answers_400_and_changes_nothing(app, client):
    before = stored(app)

    response = client.post(API_SCHEDULE, data={"mode": "daily", "time": "02:30"})

    assert response.status_code == 400
    assert "json" in response.get_json()["errors"]
    assert stored(app) == before


# --- (b) the HTML form ------------------------------------------------------------------------


@pytest.mark.slow
@examples(150)
@given(payload=form_payloads)
def test_the_html_form_answers_200_or_422_and_shows_input_only_escaped(app, payload):
    client = app.test_client()
    before = stored(app)

    response = client.post("/settings/schedule/backup_db", data=form_data(payload), headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    event(f"status {response.status_code}")

    assert response.status_code in (200, 422), body
    assert markup_problems(body) == []
    if response.status_code == 422:
        assert stored(app) == before


@examples(60)
@given(field=st.sampled_from(["time", "cron", "every_hours"]), text=text_without_surrogates)
def test_a_refused_value_comes_back_exactly_as_typed_inside_its_field(app, field, text):
    mode = {"time": "daily", "cron": "cron", "every_hours": "interval"}[field]
    client = app.test_client()

    response = client.post(
        "/settings/schedule/backup_db", data={"mode": mode, field: "\x01" + text}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 422
    field_input = parse(response.get_data(as_text=True)).find("input", name=field)
    assert field_input is not None
    # HTML turns CR and CRLF into LF when it parses; everything else must survive as typed.
    assert (
        field_input.attrs["value"].replace("\r\n", "\n") == ("\x01" + text).replace("\r\n", "\n").replace("\r", "\n")
        or field_input.attrs["value"] == "\x01" + text
    )


# --- (c) the preview and strategy-switch partials ---------------------------------------------


@pytest.mark.slow
@examples(100)
@given(
    pairs=query_pairs,
    path=st.sampled_from(["/settings/schedule/backup_db/preview", "/settings/schedule/backup_db/fields"]),
)
def test_the_preview_and_fields_partials_answer_200_and_escape_any_query(app, pairs, path):
    response = app.test_client().get(path, query_string=MultiDict(pairs), headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert markup_problems(response.get_data(as_text=True)) == []


@examples(60)
@given(
    query=raw_query_strings,
    path=st.sampled_from(["/settings/schedule/backup_db/preview", "/settings/schedule/backup_db/fields"]),
)
def test_the_preview_and_fields_partials_survive_raw_and_badly_encoded_query_strings(app, query, path):
    response = app.test_client().get(f"{path}?{query}&cron=%ff%fe{quote(SCRIPT)}&mode=cron")

    assert response.status_code == 200
    assert markup_problems(response.get_data(as_text=True)) == []


@pytest.mark.parametrize("path", ["/settings/schedule/backup_db/preview", "/settings/schedule/backup_db/fields"])
def test_a_script_in_the_cron_preview_is_shown_escaped(client, path):
    response = client.get(path, query_string={"mode": "cron", "cron": SCRIPT}, headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)

    assert response.status_code == 200
    assert SCRIPT not in body
    assert markup_problems(body) == []


# --- (d) backup names -------------------------------------------------------------------------


@pytest.fixture
def backups_with_decoys(app, client):
    """One real backup, a file that is not a backup, and a backup-named symlink to the database."""
    assert client.post("/settings/backups").status_code == 302
    wait_for_runs_to_finish(app)  # "Backup DB now" runs in the background
    folder = Path(app.config["BACKUPS_DIR"])
    (folder / "notes.txt").write_text("not a backup")
    os.symlink(app.config["DATABASE_PATH"], folder / "backup-20250101T000000.000000Z-manual.sqlite3")
    return folder


@pytest.mark.slow
@examples(150)
# No "/": a name is one path segment; "../" and "%2F" paths are tested in test_request_safety.py.
@given(
    name=st.one_of(hostile_text, st.sampled_from(["notes.txt", "backup-20250101T000000.000000Z-manual.sqlite3"])).map(
        lambda name: name.replace("/", "")
    )
)
def test_random_backup_names_answer_404_and_delete_nothing(app, backups_with_decoys, name):
    client = app.test_client()
    real = {path.name for path in backups_with_decoys.glob("backup-*Z-manual.sqlite3") if not path.is_symlink()}
    if not name or name in real:
        return
    url = "/settings/backups/" + quote(name.encode("utf-8", "surrogatepass"), safe="")
    before = changeable_state(app)

    download = client.get(url)
    delete = client.post(url + "/delete")

    assert (download.status_code, delete.status_code) == (404, 404)
    assert changeable_state(app) == before
