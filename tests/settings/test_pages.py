"""The Settings page: contract labels, security headers, no inline code, full page or partial."""

from __future__ import annotations

import json
import os
import re

import pytest

from app.models import JobRun
from tests.security.support import wait_for_runs_to_finish
from tests.settings.html_tree import first_element, parse

STRATEGIES = ["Disabled", "Daily", "Weekly", "Cron expression", "Every N hours"]
HTMX = {"HX-Request": "true"}

SCRIPT_ELEMENT = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
START_TAG = re.compile(r"<[a-zA-Z][^>]*>")
HANDLER_ATTRIBUTE = re.compile(r"\s(on[a-z]+|hx-on[\w:.-]*)\s*=", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"\sstyle\s*=", re.IGNORECASE)


def test_root_redirects_to_the_settings_page(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/settings")


def test_settings_page_shows_the_contract_headings_strategy_select_buttons_and_status_fields(client):
    response = client.get("/settings")
    page = parse(response.get_data(as_text=True))

    assert response.status_code == 200
    headings = [heading.text for heading in page.find_all("h2")]
    assert "Database backup" in headings
    assert "Schedule" in headings
    assert page.find("label", for_="backup_db-mode").text == "Strategy"
    assert page.find("label", for_="verify_backups-mode").text == "Strategy"
    select = page.by_id("backup_db-mode")
    assert select.tag == "select"
    assert [option.text for option in select.find_all("option")] == STRATEGIES
    buttons = [button.text for button in page.find_all("button")]
    for label in ("Save schedule", "Run backup now", "Backup DB now"):
        assert label in buttons
    terms = [term.text for term in page.by_id("status-backup_db").find_all("dt")]
    for label in ("Last run", "Last result", "Next run"):
        assert label in terms


REQUESTS = {
    "page": ("GET", "/settings", {}),
    "redirect": ("GET", "/", {}),
    "partial": ("GET", "/settings/schedule/status", {"headers": HTMX}),
    "form-error": ("POST", "/settings/schedule/backup_db", {"headers": HTMX, "data": {"mode": "cron", "cron": "x"}}),
    "not-found": ("GET", "/settings/no-such-page", {}),
    "api": ("GET", "/api/v1/settings/scheduler", {}),
    "api-error": ("POST", "/api/v1/settings/scheduler/backup", {"json": []}),
    "static": ("GET", "/static/css/app.css", {}),
}


@pytest.mark.parametrize("name", REQUESTS)
def test_every_answer_carries_a_strict_content_security_policy_and_nosniff(client, name):
    method, url, kwargs = REQUESTS[name]
    response = client.open(url, method=method, **kwargs)

    policy = response.headers.get("Content-Security-Policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy
    assert directives.get("frame-ancestors") == ["'none'"]
    assert directives.get("script-src", directives.get("default-src")) == ["'self'"]
    assert response.headers.get("X-Content-Type-Options") == "nosniff"


def inline_code(markup: str) -> list[str]:
    """Everything a CSP without 'unsafe-inline' would block: inline scripts, handlers, styles."""
    found = []
    for attrs, body in SCRIPT_ELEMENT.findall(markup):
        if body.strip() or "src=" not in attrs:
            found.append(f"inline <script{attrs}>")
    for tag in START_TAG.findall(markup):
        if HANDLER_ATTRIBUTE.search(tag) or STYLE_ATTRIBUTE.search(tag):
            found.append(tag)
    if re.search(r"<style\b", markup, re.IGNORECASE):
        found.append("<style> element")
    if "javascript:" in markup.lower():
        found.append("javascript: URL")
    return found


def test_no_page_or_fragment_contains_inline_scripts_handlers_or_styles(app, client, db):
    # Fill every region (a backup, a cron schedule, a running run) so all branches render.
    client.post("/api/v1/settings/backup-db")
    client.post("/settings/schedule/backup_db", data={"mode": "cron", "cron": "30 2 * * 1-5"})
    with db.writer() as session:
        session.add(JobRun(task="backup_db", trigger="manual", status="running", pid=os.getpid(), phase="copying"))
    name = os.listdir(app.config["BACKUPS_DIR"])[0]

    answers = {
        "page": client.get("/settings"),
        "page with form errors": client.post("/settings/schedule/backup_db", data={"mode": "daily", "time": "24:00"}),
        "confirm delete": client.get(f"/settings/backups/{name}/delete"),
        "fields page": client.get("/settings/schedule/backup_db/fields?mode=weekly"),
        "backups partial": client.get("/settings/backups", headers=HTMX),
        "status partial": client.get("/settings/schedule/status", headers=HTMX),
        "history partial": client.get("/settings/schedule/backup_db/history", headers=HTMX),
        "cron fields partial": client.get("/settings/schedule/backup_db/fields?mode=cron&cron=5+4+*+*+*", headers=HTMX),
        "cron preview": client.get("/settings/schedule/backup_db/preview?mode=cron&cron=5+4+*+*+*"),
        "form error partial": client.post(
            "/settings/schedule/backup_db", data={"mode": "cron", "cron": "61"}, headers=HTMX
        ),
        "toast partial": client.post("/settings/retention", data={"keep_last": "3"}, headers=HTMX),
        "field error toast partial": client.post("/settings/retention", data={"keep_last": "x"}, headers=HTMX),
    }

    for label, response in answers.items():
        assert response.status_code in (200, 422), label
        assert inline_code(response.get_data(as_text=True)) == [], label


def test_inline_code_check_detects_what_it_looks_for():
    # The check above must be able to fail.
    markup = '<script>alert(1)</script><a onclick="x()">a</a><p style="color:red">b</p><div hx-on:click="y">'
    assert len(inline_code(markup)) == 4


PARTIALS = {
    "/settings/backups": "backups-block",
    "/settings/schedule/status": "schedule-poll",
    "/settings/schedule/backup_db/history": "history-backup_db",
    "/settings/schedule/backup_db/fields?mode=weekly": "schedule-fields-backup_db",
}


@pytest.mark.parametrize("url", PARTIALS)
def test_htmx_request_gets_the_region_alone(client, url):
    response = client.get(url, headers=HTMX)
    body = response.get_data(as_text=True)
    fragment = parse(body)

    assert response.status_code == 200
    assert "<html" not in body
    assert fragment.find("main") is None
    assert first_element(fragment).attrs.get("id") == PARTIALS[url]
    # The poll answers every task's status too, out of band (one request for all sections).
    others = fragment.elements[1:]
    assert all(element.attrs.get("hx-swap-oob") == "true" for element in others)
    assert [element.attrs["id"] for element in others] == (
        ["status-backup_db", "status-verify_backups"] if url == "/settings/schedule/status" else []
    )


@pytest.mark.parametrize("url", PARTIALS)
def test_plain_request_gets_the_full_page_with_the_region(client, url):
    response = client.get(url)
    body = response.get_data(as_text=True)
    page = parse(body)

    assert response.status_code == 200
    assert "<html" in body
    assert page.find("main") is not None
    assert page.by_id(PARTIALS[url])
    assert page.by_id("backups-block") and page.by_id("schedule-form-backup_db")


def test_history_restore_request_gets_the_full_page(client):
    # htmx asks for the whole page when restoring history; a fragment would replace the page.
    headers = HTMX | {"HX-History-Restore-Request": "true"}
    body = client.get("/settings/schedule/status", headers=headers).get_data(as_text=True)

    assert "<html" in body


def test_fields_page_without_htmx_shows_the_chosen_strategy_fields(client):
    page = parse(client.get("/settings/schedule/backup_db/fields?mode=weekly").get_data(as_text=True))

    selected = [
        option.attrs["value"]
        for option in page.by_id("backup_db-mode").find_all("option")
        if "selected" in option.attrs
    ]
    assert selected == ["weekly"]
    assert page.by_id("backup_db-weekdays").tag == "fieldset"
    assert page.by_id("backup_db-time").tag == "input"


def test_form_posts_need_the_page_csrf_token_which_htmx_sends_as_a_header(make_app, htmx):
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    page = parse(client.get("/settings").get_data(as_text=True))
    token = json.loads(page.find("body").attrs["hx-headers"])["X-CSRFToken"]

    assert client.post("/settings/backups", headers=htmx).status_code == 400
    assert client.post("/settings/schedule/backup_db", data={"mode": "daily", "time": "02:00"}).status_code == 400
    assert client.post("/settings/backups", headers=htmx | {"X-CSRFToken": token}).status_code == 202
    wait_for_runs_to_finish(app)
    form_token = page.by_id("schedule-form-backup_db").find("input", name="csrf_token").attrs["value"]
    response = client.post(
        "/settings/schedule/backup_db", data={"mode": "daily", "time": "02:00", "csrf_token": form_token}
    )
    assert response.status_code == 302
    # The JSON API is exempt (it checks Sec-Fetch-Site instead).
    assert client.post("/api/v1/settings/backup-db").status_code == 200
