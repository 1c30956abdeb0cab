"""Requests other sites could forge (CSRF, Sec-Fetch-Site), security headers, and backup downloads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.services.backups import list_backups
from app.services.schedules import load_schedule
from tests.security.support import (
    BEARER,
    PASSWORD,
    QUICK_PASSWORD_HASH,
    TOKEN,
    changeable_state,
    csrf_token_from,
    log_in,
    wait_for_runs_to_finish,
)
from tests.settings.html_tree import parse

API = "/api/v1/settings"
DAILY = {"mode": "daily", "time": "03:15"}
SAFE_REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}


@pytest.fixture
def csrf_app(make_app):
    """A protected app with CSRF checks on, as in production."""
    return make_app(ADMIN_PASSWORD_HASH=QUICK_PASSWORD_HASH, API_TOKEN=TOKEN, WTF_CSRF_ENABLED=True)


@pytest.fixture
def logged_in(csrf_app):
    """A logged-in browser session (its CSRF token as `.csrf_token`)."""
    client = csrf_app.test_client()
    assert log_in(client).status_code == 302
    client.csrf_token = csrf_token_from(client.get("/settings").get_data(as_text=True))
    assert client.csrf_token
    return client


def backup_names(app) -> list[str]:
    return sorted(path.name for path in Path(app.config["BACKUPS_DIR"]).glob("backup-*.sqlite3"))


def stored_schedule(app) -> tuple[dict, int | None]:
    schedule, row = load_schedule(app.extensions["db"], "backup_db")
    return schedule.as_dict(), None if row is None else row.version


def make_backup(app, client) -> str:
    response = client.post("/settings/backups", data={"csrf_token": client.csrf_token})
    assert response.status_code == 302
    wait_for_runs_to_finish(app)  # "Backup DB now" runs in the background
    (name,) = backup_names(app)
    return name


# --- CSRF on the HTML forms --------------------------------------------------------------

# Each state-changing form: its URL and the fields a browser sends.
FORMS = {
    "backup now": ("/settings/backups", {}),
    "save schedule": ("/settings/schedule/backup_db", {"mode": "interval", "every_hours": "6"}),
    "run backup now": ("/settings/schedule/backup_db/run", {}),
    "delete backup": ("/settings/backups/{name}/delete", {}),
}


def form_request(app, client, form: str) -> tuple[str, dict]:
    url, data = FORMS[form]
    if "{name}" in url:
        url = url.format(name=make_backup(app, client))
    return url, dict(data)


@pytest.mark.parametrize("form", FORMS)
def test_a_form_post_without_the_csrf_token_is_refused_and_changes_nothing(csrf_app, logged_in, form):
    url, data = form_request(csrf_app, logged_in, form)
    before = changeable_state(csrf_app)

    response = logged_in.post(url, data=data)

    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert changeable_state(csrf_app) == before


@pytest.mark.parametrize("form", FORMS)
def test_a_form_post_with_a_wrong_csrf_token_is_refused_and_changes_nothing(csrf_app, logged_in, form):
    url, data = form_request(csrf_app, logged_in, form)
    before = changeable_state(csrf_app)

    response = logged_in.post(url, data=data | {"csrf_token": logged_in.csrf_token[::-1]})

    assert response.status_code == 400
    assert changeable_state(csrf_app) == before


@pytest.mark.parametrize("form", FORMS)
def test_a_form_post_with_the_pages_hidden_token_works(csrf_app, logged_in, form):
    url, data = form_request(csrf_app, logged_in, form)
    before = changeable_state(csrf_app)

    response = logged_in.post(url, data=data | {"csrf_token": logged_in.csrf_token})
    wait_for_runs_to_finish(csrf_app)

    assert response.status_code == 302
    assert changeable_state(csrf_app) != before


@pytest.mark.parametrize("form", FORMS)
def test_an_htmx_post_with_the_x_csrftoken_header_from_body_hx_headers_works(csrf_app, logged_in, form):
    url, data = form_request(csrf_app, logged_in, form)
    page = parse(logged_in.get("/settings").get_data(as_text=True))
    header_token = csrf_token_from(f"<body hx-headers='{page.find('body').attrs['hx-headers']}'></body>")
    before = changeable_state(csrf_app)

    response = logged_in.post(url, data=data, headers={"HX-Request": "true", "X-CSRFToken": header_token})
    wait_for_runs_to_finish(csrf_app)

    assert response.status_code in (200, 202)
    assert changeable_state(csrf_app) != before


def test_a_csrf_token_from_another_session_is_refused(csrf_app, logged_in):
    other = csrf_app.test_client()
    log_in(other)
    foreign_token = csrf_token_from(other.get("/settings").get_data(as_text=True))

    response = logged_in.post("/settings/backups", data={"csrf_token": foreign_token})

    assert response.status_code == 400
    assert backup_names(csrf_app) == []


def test_login_without_the_csrf_token_is_refused_and_starts_no_session(csrf_app):
    client = csrf_app.test_client()

    response = client.post("/login", data={"password": PASSWORD})

    assert response.status_code == 400
    assert client.get("/settings").status_code == 302


def test_login_with_the_csrf_token_from_the_login_page_works(csrf_app):
    client = csrf_app.test_client()

    assert log_in(client).status_code == 302
    assert client.get("/settings").status_code == 200


def test_logging_in_starts_a_new_session_so_a_token_from_before_no_longer_works(csrf_app):
    client = csrf_app.test_client()
    token_before = csrf_token_from(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"password": PASSWORD, "csrf_token": token_before})

    response = client.post("/settings/backups", data={"csrf_token": token_before})

    assert response.status_code == 400
    assert backup_names(csrf_app) == []


def test_logout_without_the_csrf_token_is_refused_and_the_session_stays(logged_in):
    assert logged_in.post("/logout").status_code == 400
    assert logged_in.get("/settings").status_code == 200


def test_logout_with_the_token_of_the_log_out_form_ends_the_session(logged_in):
    page = parse(logged_in.get("/settings").get_data(as_text=True))
    token = page.find("form", action="/logout").find("input", name="csrf_token").attrs["value"]

    assert logged_in.post("/logout", data={"csrf_token": token}).status_code == 302
    assert logged_in.get("/settings").status_code == 302


# --- CSRF and Sec-Fetch-Site on the JSON API -----------------------------------------------


def test_cookie_authenticated_json_without_the_csrf_token_is_refused_and_changes_nothing(csrf_app, logged_in):
    before = stored_schedule(csrf_app)

    response = logged_in.post(f"{API}/scheduler/backup", json=DAILY)

    assert response.status_code == 400
    assert response.is_json
    assert "CSRF" in response.get_json()["error"]
    assert stored_schedule(csrf_app) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{API}/backup-db"),
        ("POST", f"{API}/scheduler/backup/run"),
        ("DELETE", f"{API}/scheduler/backup"),
    ],
)
def test_every_cookie_authenticated_api_change_needs_the_csrf_token(csrf_app, logged_in, method, path):
    logged_in.post(f"{API}/scheduler/backup", json=DAILY, headers={"X-CSRFToken": logged_in.csrf_token})
    before = changeable_state(csrf_app)

    response = logged_in.open(path, method=method)

    assert response.status_code == 400
    assert response.is_json
    assert changeable_state(csrf_app) == before


def test_cookie_authenticated_json_with_the_x_csrftoken_header_works(csrf_app, logged_in):
    response = logged_in.post(f"{API}/scheduler/backup", json=DAILY, headers={"X-CSRFToken": logged_in.csrf_token})

    assert response.status_code == 200
    assert stored_schedule(csrf_app)[0] == {"mode": "daily", "time": "03:15"}


def test_cookie_authenticated_reads_need_no_csrf_token(logged_in):
    assert logged_in.get(f"{API}/scheduler").status_code == 200


def test_bearer_token_json_needs_no_csrf_token(csrf_app):
    client = csrf_app.test_client()

    response = client.post(f"{API}/scheduler/backup", json=DAILY, headers=BEARER)

    assert response.status_code == 200
    assert stored_schedule(csrf_app)[0] == {"mode": "daily", "time": "03:15"}


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
@pytest.mark.parametrize("auth", ["cookie", "bearer"])
def test_api_requests_a_browser_marks_as_from_another_site_are_refused(csrf_app, logged_in, site, auth):
    client = logged_in if auth == "cookie" else csrf_app.test_client()
    headers = {"Sec-Fetch-Site": site, "X-CSRFToken": logged_in.csrf_token} | (BEARER if auth == "bearer" else {})
    before = changeable_state(csrf_app)

    read = client.get(f"{API}/scheduler", headers=headers)
    write = client.post(f"{API}/scheduler/backup", json=DAILY, headers=headers)

    assert (read.status_code, write.status_code) == (403, 403)
    assert write.is_json
    assert changeable_state(csrf_app) == before


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_api_requests_from_this_site_or_typed_by_the_user_are_served(logged_in, site):
    assert logged_in.get(f"{API}/scheduler", headers={"Sec-Fetch-Site": site}).status_code == 200


# --- security headers --------------------------------------------------------------------


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name.lower()] = values
    return directives


def header_problems(label: str, response) -> list[str]:
    """What is missing from the security headers of one answer."""
    problems = []
    csp = response.headers.get("Content-Security-Policy")
    if csp is None:
        return [f"{label}: no Content-Security-Policy"]
    directives = csp_directives(csp)
    if "'unsafe-inline'" in csp or "'unsafe-eval'" in csp:
        problems.append(f"{label}: CSP allows unsafe-inline or unsafe-eval: {csp}")
    if directives.get("frame-ancestors") != ["'none'"]:
        problems.append(f"{label}: CSP frame-ancestors is not 'none': {csp}")
    if directives.get("script-src", directives.get("default-src")) != ["'self'"]:
        problems.append(f"{label}: scripts are not limited to 'self': {csp}")
    if directives.get("object-src") != ["'none'"]:
        problems.append(f"{label}: CSP object-src is not 'none': {csp}")
    if response.headers.get("X-Content-Type-Options") != "nosniff":
        problems.append(f"{label}: no X-Content-Type-Options: nosniff")
    if response.headers.get("Referrer-Policy") not in SAFE_REFERRER_POLICIES:
        problems.append(f"{label}: Referrer-Policy {response.headers.get('Referrer-Policy')!r}")
    return problems


def test_every_kind_of_answer_carries_the_security_headers(csrf_app, logged_in, make_app):
    name = make_backup(csrf_app, logged_in)
    anonymous = csrf_app.test_client()
    unprotected = make_app(INSTANCE_PATH=str(Path(csrf_app.instance_path).parent / "other")).test_client()
    answers = {
        "page": logged_in.get("/settings"),
        "login page": anonymous.get("/login"),
        "wrong password page": anonymous.post("/login", data={"password": "x"}),
        "htmx partial": logged_in.get("/settings/schedule/status", headers={"HX-Request": "true"}),
        "422 form partial": logged_in.post(
            "/settings/schedule/backup_db",
            data={"mode": "cron", "cron": "nope"},
            headers={"HX-Request": "true", "X-CSRFToken": logged_in.csrf_token},
        ),
        "confirm delete page": logged_in.get(f"/settings/backups/{name}/delete"),
        "download": logged_in.get(f"/settings/backups/{name}"),
        "api answer": logged_in.get(f"{API}/scheduler"),
        "api 400": logged_in.post(f"{API}/scheduler/backup", json={}, headers={"X-CSRFToken": logged_in.csrf_token}),
        "api 401": anonymous.get(f"{API}/scheduler"),
        "api 403": logged_in.get(f"{API}/scheduler", headers={"Sec-Fetch-Site": "cross-site"}),
        "api 404": logged_in.get(f"{API}/no-such-thing"),
        "api 405": logged_in.put(f"{API}/scheduler"),
        "api 413": logged_in.post(f"{API}/scheduler/backup", data="x" * 100_000, content_type="application/json"),
        "static css": anonymous.get("/static/css/app.css"),
        "static script": anonymous.get("/static/vendor/htmx/htmx.min.js"),
        "static 404": anonymous.get("/static/no-such-file.js"),
        "health": anonymous.get("/healthz"),
        "login redirect": anonymous.get("/settings"),
        "htmx 401": anonymous.get("/settings/schedule/status", headers={"HX-Request": "true"}),
        "page 404": logged_in.get("/settings/no-such-page"),
        "page 405": logged_in.get("/logout"),
        "csrf 400": logged_in.post("/settings/backups"),
        "no-password 403": unprotected.get("/settings", environ_base={"REMOTE_ADDR": "192.0.2.10"}),
    }

    problems = [problem for label, response in answers.items() for problem in header_problems(label, response)]

    assert problems == []
    assert answers["api 413"].status_code == 413


def test_the_pages_use_no_inline_script_style_or_event_handler_the_policy_would_block(csrf_app, logged_in):
    name = make_backup(csrf_app, logged_in)
    markup = {
        "settings": logged_in.get("/settings"),
        "login": csrf_app.test_client().get("/login"),
        "confirm delete": logged_in.get(f"/settings/backups/{name}/delete"),
        "cron form": logged_in.get("/settings/schedule/backup_db/fields?mode=cron&cron=*/5+*+*+*+*"),
        "weekly form": logged_in.get("/settings/schedule/backup_db/fields?mode=weekly"),
        "history": logged_in.get("/settings/schedule/backup_db/history"),
    }
    problems = []

    for label, response in markup.items():
        for element in parse(response.get_data(as_text=True)).iter():
            if element.tag == "script" and (not element.attrs.get("src") or element.text):
                problems.append(f"{label}: inline <script>")
            if element.tag == "style":
                problems.append(f"{label}: <style> element")
            for attribute, value in element.attrs.items():
                if attribute == "style" or attribute.startswith("on") or attribute.startswith("hx-on"):
                    problems.append(f"{label}: {attribute}= on <{element.tag}>")
                if (value or "").strip().lower().startswith("javascript:"):
                    problems.append(f"{label}: javascript: URL in {attribute}")

    assert problems == []


# --- downloads -----------------------------------------------------------------------------


def test_a_download_is_the_exact_file_sent_as_an_attachment_not_rendered(csrf_app, logged_in):
    name = make_backup(csrf_app, logged_in)

    response = logged_in.get(f"/settings/backups/{name}")

    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f"attachment; filename={name}"
    assert response.headers["Content-Type"] == "application/vnd.sqlite3"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.data == (Path(csrf_app.config["BACKUPS_DIR"]) / name).read_bytes()


def test_a_download_is_not_kept_in_shared_caches(csrf_app, logged_in):
    # A backup is the whole database: no proxy or logged_in cache may keep a copy.
    name = make_backup(csrf_app, logged_in)

    cache_control = logged_in.get(f"/settings/backups/{name}").headers.get("Cache-Control", "")

    assert "no-store" in cache_control


def test_only_exact_listed_backup_names_can_be_downloaded(csrf_app, logged_in):
    name = make_backup(csrf_app, logged_in)
    folder = Path(csrf_app.config["BACKUPS_DIR"])
    database = Path(csrf_app.config["DATABASE_PATH"])
    (folder / "notes.txt").write_text("not a backup")
    (folder / ".backup-20260101T000000.000000Z-manual.sqlite3.tmp").write_bytes(b"partial")
    os.symlink(database, folder / "backup-20250101T000000.000000Z-manual.sqlite3")
    refused = [
        "notes.txt",
        ".backup-20260101T000000.000000Z-manual.sqlite3.tmp",
        "backup-20250101T000000.000000Z-manual.sqlite3",  # a symlink to the live database
        name.upper(),
        name + "%0A",
        name + ".",
        name + "%00",
        " " + name,
        name[:-1],
        database.name,
        f"..%2F{database.name}",
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E",
        "%2Fetc%2Fpasswd",
    ]
    listed = [
        cell.text for cell in parse(logged_in.get("/settings").get_data(as_text=True)).find_all("th", class_="filename")
    ]

    answers = {candidate: logged_in.get(f"/settings/backups/{candidate}").status_code for candidate in refused}

    assert listed == [name]
    assert answers == dict.fromkeys(refused, 404)
    assert logged_in.get(f"/settings/backups/{name}").status_code == 200


def test_a_backup_name_that_is_not_listed_cannot_be_deleted(csrf_app, logged_in):
    folder = Path(csrf_app.config["BACKUPS_DIR"])
    make_backup(csrf_app, logged_in)
    (folder / "notes.txt").write_text("keep me")

    response = logged_in.post("/settings/backups/notes.txt/delete", data={"csrf_token": logged_in.csrf_token})

    assert response.status_code == 404
    assert (folder / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:9999", "null"])
def test_api_refuses_a_foreign_origin_even_without_fetch_metadata(make_app, origin):
    """Browsers without Sec-Fetch-Site still send Origin on a cross-site POST."""
    app = make_app()
    client = app.test_client()
    answer = client.post("/api/v1/settings/backup-db", headers={"Origin": origin})
    assert answer.status_code == 403
    assert list_backups(Path(app.config["BACKUPS_DIR"])) == []
    same = client.post("/api/v1/settings/backup-db", headers={"Origin": "http://localhost"})
    assert same.status_code == 200
