"""``/api/v1/settings/notifications``, the HTML block and the CLI: bad input saves nothing; secrets stay masked."""

from __future__ import annotations

import logging
import re

import pytest

from app.models import NotificationSettings
from app.services.notifications import run_finished
from app.services.runner import run_task_now
from tests.support.receivers import HttpReceiver
from tests.support.server import free_port
from tests.support.waiting import wait_for

API = "/api/v1/settings/notifications"
SECRET_PASSWORD = "Pw0rdXyzzy42"
SECRET_TOKEN = "tok9QwErTy77"
SECRET_PING = "5f0c9d1e-aaaa-bbbb-cccc-d1e2f3a4b5c6"


def saved(app):
    with app.extensions["db"].session() as session:
        row = session.get(NotificationSettings, 1)
    return None if row is None else (row.urls, row.events, row.ping_url)


def put(client, urls, events=("run_failed",), ping_url=None):
    return client.put(API, json={"urls": list(urls), "events": list(events), "ping_url": ping_url})


def test_defaults_are_failures_stale_and_recovered(client):
    answer = client.get(API).get_json()
    assert answer["urls"] == [] and answer["ping_url"] is None
    assert answer["events"] == ["run_failed", "verification_failed", "offsite_failed", "stale", "recovered"]


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        (["json://127.0.0.1/ok", "nosuchscheme://host/x"], "Line 2 (nosuchscheme://…) is not a notification URL"),
        (["json://host/a b"], "Line 1 contains a space"),
        (["json://host/\x07bell"], "Line 1 contains a space or a control character"),
        (["json://host/\u202eevil"], "Line 1 contains a space or a control character"),
        (["json://host/a\nnosuch://x"], "Line 1 contains a line break"),
        (["x"] * 10_000, "At most 20 notification URLs (got 10000 lines)"),
        (["json://host/" + "a" * 2100], "Line 1 is longer than 2000 characters"),
        (["plain text"], "Line 1 contains a space"),
        (["example.org/hook"], "Line 1 is not a URL"),
        (["json://host/x", "json://host/x"], "Line 2 repeats an earlier URL"),
    ],
)
def test_bad_urls_answer_400_naming_the_line_and_save_nothing(app, client, urls, message):
    assert put(client, ["json://127.0.0.1/kept"]).status_code == 200
    before = saved(app)
    answer = put(client, urls)
    assert answer.status_code == 400
    assert any(message in text for text in answer.get_json()["errors"]["urls"]), answer.get_json()
    assert saved(app) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"urls": "json://host/x", "events": [], "ping_url": None}, "urls"),
        ({"urls": [], "events": ["nope"], "ping_url": None}, "events"),
        ({"urls": [], "events": [], "ping_url": "ftp://host/x"}, "ping_url"),
        ({"urls": [], "events": [], "ping_url": "https://host/a b"}, "ping_url"),
        ({"urls": [], "events": [], "ping_url": 5}, "ping_url"),
        ({"urls": [], "events": []}, "ping_url"),
        ({"urls": [], "events": [], "ping_url": None, "extra": 1}, "extra"),
    ],
)
def test_bad_fields_answer_400_and_save_nothing(app, client, body, field):
    answer = client.put(API, json=body)
    assert answer.status_code == 400
    assert field in answer.get_json()["errors"]
    assert saved(app) is None


def test_a_body_over_the_request_limit_is_refused_and_saves_nothing(app, client):
    answer = put(client, ["json://host/" + "a" * 60] * 10_000)
    assert answer.status_code == 413
    assert saved(app) is None


def test_the_html_form_shows_the_bad_line_keeps_the_input_and_saves_nothing(app, client, htmx):
    typed = "json://127.0.0.1/ok\nnosuchscheme://host/x"
    answer = client.post("/settings/notifications", data={"urls": typed, "events": ["stale"]}, headers=htmx)
    assert answer.status_code == 422
    assert "Line 2 (nosuchscheme://…) is not a notification URL" in answer.text
    assert "nosuchscheme://host/x</textarea>" in answer.text
    assert saved(app) is None
    answer = client.post("/settings/notifications", data={"urls": "x\n" * 10_000}, headers=htmx)
    assert answer.status_code == 422 and "At most 20 notification URLs" in answer.text
    assert saved(app) is None


def test_saving_without_javascript_redirects_and_the_page_shows_the_block(app, client):
    answer = client.post("/settings/notifications", data={"urls": "json://127.0.0.1/hook", "events": ["run_failed"]})
    assert answer.status_code == 302
    page = client.get("/settings").text
    assert 'id="notifications-heading">Notifications</h2>' in page
    assert "Send test notification" in page and "Ping URL" in page and "Notification URLs" in page


def test_masked_lines_sent_back_keep_their_secrets(app, client):
    secret_url = f"json://user:{SECRET_PASSWORD}@127.0.0.1/hook"
    ping = f"https://hc.example.org/ping/{SECRET_PING}"
    answer = put(client, [secret_url], ping_url=ping).get_json()
    assert answer["urls"][0].startswith("json://user:****@127.0.0.1/hook")
    again = put(client, answer["urls"] + ["json://127.0.0.1/second"], ping_url=answer["ping_url"])
    assert again.status_code == 200
    urls, _events, ping_url = saved(app)
    assert urls.split("\n") == [secret_url, "json://127.0.0.1/second"]
    assert ping_url == ping


def test_the_state_database_is_owner_only_once_secrets_are_saved(app, client):
    put(client, [f"json://user:{SECRET_PASSWORD}@127.0.0.1/hook"])
    assert (app.extensions["db"].path.stat().st_mode & 0o777) == 0o600


def test_secrets_never_appear_in_answers_pages_cli_or_logs(app, client, htmx, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    app.config["NOTIFY_TIMEOUT_SECONDS"] = 2
    (tmp_path / "afile").write_text("x")
    app.config["BACKUPS_DIR"] = str(tmp_path / "afile" / "backups")
    refused = free_port()
    with HttpReceiver() as http:
        telegram = f"tgram://123456789:{SECRET_TOKEN}/987654321"  # shown and logged masked; never sent (no network)
        answers = [put(client, [telegram]).get_data(as_text=True), client.get(API).get_data(as_text=True)]
        answers.append(client.get("/settings").get_data(as_text=True))
        urls = [
            f"json://user:{SECRET_PASSWORD}@127.0.0.1:{http.port}/hook",
            f"json://user:{SECRET_PASSWORD}@127.0.0.1:{refused}/down",
        ]
        ping = f"http://127.0.0.1:{refused}/ping/{SECRET_PING}"
        answers.append(put(client, urls, events=["run_failed", "success"], ping_url=ping).get_data(as_text=True))
        answers.append(client.get(API).get_data(as_text=True))
        answers.append(client.post(f"{API}/test").get_data(as_text=True))
        answers.append(client.get("/settings").get_data(as_text=True))
        answers.append(client.post("/settings/notifications/test", headers=htmx).get_data(as_text=True))
        answers.append(app.test_cli_runner().invoke(args=["notify", "test"]).output)
        answers.append(app.test_cli_runner().invoke(args=["notify", "show"]).output)
        run = run_task_now(app.config, app.extensions["db"], "backup_db").run
        run_finished(app.config, app.extensions["db"], run.id)
        wait_for(lambda: len(http.posts()) >= 3, timeout=10)  # two tests, one failure
    wait_for(lambda: "notification run_failed" in caplog.text, timeout=10)
    answers.append(client.get("/settings").get_data(as_text=True))
    with app.extensions["db"].session() as session:
        rows = session.execute(_sends()).all()
    stored = " ".join(f"{target} {error}" for target, error in rows)
    for secret in (SECRET_PASSWORD, SECRET_TOKEN, SECRET_PING):
        for number, text in enumerate(answers):
            assert secret not in text, f"answer {number} shows {secret}"
        assert secret not in caplog.text
        assert secret not in stored
    assert re.search(r"tgram://1\.\.\.7/987654321", answers[1])  # Apprise's privacy form
    assert "user:****@127.0.0.1" in answers[4]


def _sends():
    from sqlalchemy import select

    from app.models import NotificationSend

    return select(NotificationSend.target, NotificationSend.error)


def test_sending_a_test_without_urls_says_what_to_do(client, htmx):
    assert client.post(f"{API}/test").status_code == 400
    answer = client.post("/settings/notifications/test", headers=htmx)
    assert answer.status_code == 422  # swapped by htmx, with its toast
    assert "Save at least one notification URL first." in answer.text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NOTIFY_TIMEOUT_SECONDS": "0"}, "NOTIFY_TIMEOUT_SECONDS must be a whole number from 1 to 300"),
        ({"NOTIFY_REMIND_HOURS": "soon"}, "NOTIFY_REMIND_HOURS must be a whole number"),
        ({"PUBLIC_URL": "backups.example.org"}, "PUBLIC_URL must be an http(s) address"),
    ],
)
def test_bad_notification_settings_stop_start_up(make_app, env, message):
    from app import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        make_app(**env)


def test_notification_settings_have_defaults(app):
    assert (app.config["NOTIFY_TIMEOUT_SECONDS"], app.config["NOTIFY_REMIND_HOURS"]) == (10, 24)
    assert app.config["PUBLIC_URL"] is None
