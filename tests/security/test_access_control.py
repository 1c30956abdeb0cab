"""Who may use the app: login, bearer token, the public routes, and the unprotected loopback mode."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from werkzeug.security import generate_password_hash

from app import ConfigError
from tests.security.support import BEARER, PASSWORD, TOKEN, changeable_state, log_in, wait_for_runs_to_finish
from tests.settings.html_tree import parse

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PUBLIC_ENDPOINTS = {"auth.login", "health.healthz", "static"}
# A plausible value for every URL variable; a new variable fails the walk until it is added here.
URL_VALUES = {
    "name": "backup-20260101T000000.000000Z-manual.sqlite3",
    "run_id": 1,
    "filename": "css/app.css",
    "task_id": "backup_db",
    "task_name": "backup",
    "target_id": 1,
}
WRONG_AUTHORIZATIONS = [
    "Bearer wrong-token-wrong-token-wrong",
    f"Bearer {TOKEN[:-1]}",
    f"Bearer {TOKEN}x",
    f"Bearer x{TOKEN}",
    f"Basic {TOKEN}",
    TOKEN,
    "Bearer",
    "Bearer ",
]


def every_request(app, public: bool = False) -> list[tuple[str, str]]:
    """(method, path) for every rule and each of its methods; public routes only when asked."""
    adapter = app.url_map.bind("localhost")
    found = []
    for rule in app.url_map.iter_rules():
        if (rule.endpoint in PUBLIC_ENDPOINTS) != public:
            continue
        missing = set(rule.arguments) - set(URL_VALUES)
        assert not missing, f"{rule} has URL variables without a test value: {missing}"
        path = adapter.build(rule.endpoint, {name: URL_VALUES[name] for name in rule.arguments})
        found.extend((method, path) for method in sorted(rule.methods))
    return found


def is_login_redirect(response) -> bool:
    return response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"


def refusal_problem(method: str, path: str, response, htmx: bool = False) -> str | None:
    """Why this answer is not the refusal an anonymous request must get (None when it is)."""
    where = f"{method} {path} -> {response.status_code}"
    if path.startswith("/api/"):
        if response.status_code != 401:
            return f"{where}, expected 401"
        if not response.headers.get("WWW-Authenticate", "").startswith("Bearer"):
            return f"{where} without WWW-Authenticate: Bearer"
        if method != "HEAD" and "error" not in (response.get_json(silent=True) or {}):
            return f"{where} without a JSON error"
        return None
    if htmx:
        if response.status_code != 401 or urlsplit(response.headers.get("HX-Redirect", "")).path != "/login":
            return f"{where}, expected 401 with HX-Redirect to /login"
        return None
    if not is_login_redirect(response):
        return f"{where}, expected a redirect to /login"
    return None


# --- refusing anonymous requests -------------------------------------------------------


def test_the_walk_covers_the_pages_the_api_and_the_three_public_routes(secure_app):
    protected = {path for _, path in every_request(secure_app)}
    public = {path for _, path in every_request(secure_app, public=True)}

    assert public == {"/login", "/healthz", "/static/css/app.css"}
    assert {"/", "/settings", "/settings/backups", "/settings/schedule/backup_db", "/logout"} <= protected
    assert {"/api/v1/settings/backup-db", "/api/v1/settings/scheduler/backup"} <= protected


def test_every_protected_route_and_method_refuses_anonymous_requests_and_changes_nothing(secure_app):
    client = secure_app.test_client()
    before = changeable_state(secure_app)

    problems = [
        refusal_problem(method, path, client.open(path, method=method)) for method, path in every_request(secure_app)
    ]

    assert [problem for problem in problems if problem] == []
    assert changeable_state(secure_app) == before


def test_htmx_requests_to_pages_get_401_with_hx_redirect_to_the_login_page(secure_app):
    client = secure_app.test_client()

    problems = [
        refusal_problem(method, path, client.open(path, method=method, headers={"HX-Request": "true"}), htmx=True)
        for method, path in every_request(secure_app)
    ]

    assert [problem for problem in problems if problem] == []


def test_unknown_urls_redirect_anonymous_visitors_to_login_instead_of_revealing_what_exists(secure_app):
    client = secure_app.test_client()

    assert is_login_redirect(client.get("/no-such-page"))
    assert client.get("/api/v1/no-such-endpoint").status_code == 401


def test_login_health_and_static_files_need_no_login(secure_app):
    client = secure_app.test_client()

    assert client.get("/login").status_code == 200
    assert client.get("/healthz").status_code in (200, 503)
    assert client.get("/static/css/app.css").status_code == 200


def test_the_bearer_token_opens_every_protected_route_and_method(secure_app):
    client = secure_app.test_client()
    problems = []
    for method, path in every_request(secure_app):
        response = client.open(path, method=method, headers=BEARER)
        # Logging out answers with a redirect to /login by design; everything else must not.
        if response.status_code in (401, 403) or (is_login_redirect(response) and path != "/logout"):
            problems.append(f"{method} {path} -> {response.status_code} {response.headers.get('Location', '')}")
    wait_for_runs_to_finish(secure_app)

    assert problems == []


def test_a_wrong_or_malformed_token_is_refused_everywhere(secure_app):
    client = secure_app.test_client()
    before = changeable_state(secure_app)

    problems = []
    for authorization in WRONG_AUTHORIZATIONS:
        for method, path in every_request(secure_app):
            response = client.open(path, method=method, headers={"Authorization": authorization})
            if problem := refusal_problem(method, path, response):
                problems.append(f"{authorization!r}: {problem}")

    assert problems == []
    assert changeable_state(secure_app) == before


def test_an_empty_bearer_token_is_refused_when_no_api_token_is_configured(make_app):
    client = make_app(ADMIN_PASSWORD=PASSWORD).test_client()

    for authorization in ("Bearer ", "Bearer", "Bearer None"):
        response = client.get("/api/v1/settings/backups", headers={"Authorization": authorization})
        assert response.status_code == 401, authorization


# --- the login page ----------------------------------------------------------------------


def test_a_wrong_password_answers_401_with_the_message_and_starts_no_session(secure_app):
    client = secure_app.test_client()

    response = log_in(client, password="wrong password!")
    body = response.get_data(as_text=True)

    assert response.status_code == 401
    assert "Wrong password." in parse(body).by_id("main").text
    assert "wrong password!" not in body
    assert client.get_cookie("session") is None or "admin" not in client.get_cookie("session").value
    assert is_login_redirect(client.get("/settings"))


def test_the_right_password_redirects_to_next_and_opens_the_pages_and_the_api(secure_app):
    client = secure_app.test_client()

    response = log_in(client, next_url="/settings/backups")

    assert response.status_code == 302
    assert response.headers["Location"] == "/settings/backups"
    assert client.get("/settings").status_code == 200
    assert client.get("/api/v1/settings/backups").status_code == 200


def test_after_login_the_visitor_lands_on_the_page_that_sent_them_to_login(secure_app):
    client = secure_app.test_client()
    refused = client.get("/settings/backups?view=all")

    response = client.post(refused.headers["Location"], data={"password": PASSWORD})

    assert response.status_code == 302
    assert response.headers["Location"] == "/settings/backups?view=all"


@pytest.mark.parametrize(
    "target", ["//evil.com", "https://evil.com", "http://evil.com/settings", "///evil.com", "javascript:alert(1)"]
)
def test_login_never_redirects_to_another_site(secure_app, target):
    response = log_in(secure_app.test_client(), next_url=target)

    assert response.status_code == 302
    assert response.headers["Location"] == "/settings"


@pytest.mark.parametrize("target", ["/\\evil.com", "\\\\evil.com", "/\t/evil.com", "/%2F%2Fevil.com", " //evil.com"])
def test_login_redirects_with_backslashes_or_control_characters_stay_on_this_site(secure_app, target):
    # Browsers read "/\evil.com" as "//evil.com" and drop tabs: the Location must not let them.
    location = log_in(secure_app.test_client(), next_url=target).headers["Location"]

    assert urlsplit(urljoin("http://localhost/login", location)).netloc == "localhost"
    assert not location.startswith(("//", "/\\", "\\"))
    assert "\t" not in location


def test_the_session_cookie_is_httponly_and_samesite_lax(secure_app):
    client = secure_app.test_client()

    log_in(client)
    cookie = client.get_cookie("session")

    assert cookie is not None
    assert cookie.http_only
    assert cookie.same_site == "Lax"


def test_logout_by_post_ends_the_session(secure_app):
    client = secure_app.test_client()
    log_in(client)

    response = client.post("/logout")

    assert is_login_redirect(response)
    assert is_login_redirect(client.get("/settings"))
    assert client.get("/api/v1/settings/backups").status_code == 401


def test_logout_by_get_does_nothing_so_a_link_or_image_cannot_log_the_user_out(secure_app):
    client = secure_app.test_client()
    log_in(client)

    assert client.get("/logout").status_code == 405
    assert client.get("/settings").status_code == 200


def test_the_page_offers_log_out_only_to_a_logged_in_user(secure_app):
    client = secure_app.test_client()

    assert parse(client.get("/login").get_data(as_text=True)).find("form", action="/logout") is None
    log_in(client)
    page = parse(client.get("/settings").get_data(as_text=True))
    assert page.find("form", action="/logout") is not None
    assert page.find(id="no-auth-notice") is None


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize("password", ["1234567", "short", " "])
def test_a_password_shorter_than_eight_characters_is_refused_at_start(make_app, password):
    with pytest.raises(ConfigError, match="ADMIN_PASSWORD"):
        make_app(ADMIN_PASSWORD=password)


def test_a_password_of_eight_characters_is_accepted(make_app):
    assert make_app(ADMIN_PASSWORD="12345678").config["AUTH_ENABLED"] is True


def test_an_api_token_without_a_password_is_refused_at_start(make_app):
    with pytest.raises(ConfigError, match="API_TOKEN"):
        make_app(API_TOKEN=TOKEN)


def test_a_short_api_token_is_refused_at_start(make_app):
    with pytest.raises(ConfigError, match="API_TOKEN"):
        make_app(ADMIN_PASSWORD=PASSWORD, API_TOKEN="too-short")


def test_a_password_and_a_password_hash_together_are_refused_at_start(make_app):
    with pytest.raises(ConfigError, match="not both"):
        make_app(ADMIN_PASSWORD=PASSWORD, ADMIN_PASSWORD_HASH=generate_password_hash(PASSWORD))


def test_a_password_hash_that_is_not_a_werkzeug_hash_is_refused_at_start(make_app):
    with pytest.raises(ConfigError, match="ADMIN_PASSWORD_HASH"):
        make_app(ADMIN_PASSWORD_HASH=PASSWORD)


@pytest.mark.parametrize("method", ["scrypt", "pbkdf2:sha256:1000"])
def test_a_werkzeug_password_hash_protects_the_app_and_accepts_its_password(make_app, method):
    app = make_app(ADMIN_PASSWORD_HASH=generate_password_hash("another good password", method=method))
    client = app.test_client()

    assert is_login_redirect(client.get("/settings"))
    assert log_in(client, password=PASSWORD).status_code == 401
    assert log_in(client, password="another good password").status_code == 302
    assert client.get("/settings").status_code == 200


# --- without a password: this machine only -----------------------------------------------


def test_without_a_password_the_page_warns_that_nothing_is_protected(app, client):
    page = parse(client.get("/settings").get_data(as_text=True))

    notice = page.by_id("no-auth-notice")
    assert "ADMIN_PASSWORD" in notice.text
    assert "127.0.0.1" in notice.text


@pytest.mark.parametrize("path", ["/settings", "/api/v1/settings/backups", "/healthz", "/static/css/app.css"])
def test_without_a_password_other_machines_are_refused(client, path):
    response = client.get(path, environ_base={"REMOTE_ADDR": "192.0.2.10"})

    assert response.status_code == 403
    assert "No password is set" in response.get_data(as_text=True)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_without_a_password_this_machine_is_served(client, address):
    assert client.get("/settings", environ_base={"REMOTE_ADDR": address}).status_code == 200


def test_without_a_password_a_refused_post_changes_nothing(app, client):
    before = changeable_state(app)

    response = client.post("/settings/backups", environ_base={"REMOTE_ADDR": "192.0.2.10"})

    assert response.status_code == 403
    assert changeable_state(app) == before


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded"])
def test_without_a_password_requests_relayed_by_a_local_proxy_are_refused(client, header):
    # A reverse proxy on this machine connects from 127.0.0.1 on behalf of other machines.
    response = client.get("/settings", headers={header: "for=192.0.2.10" if header == "Forwarded" else "192.0.2.10"})

    assert response.status_code == 403


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "192.0.2.10:8000", "localhost.evil.example"])
def test_without_a_password_a_foreign_host_name_is_refused_against_dns_rebinding(client, host):
    # evil.example resolving to 127.0.0.1 would make its scripts same-origin with this app.
    response = client.get("/api/v1/settings/backups", headers={"Host": host})

    assert response.status_code == 403


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000"])
def test_without_a_password_local_host_names_are_served(client, host):
    assert client.get("/api/v1/settings/backups", headers={"Host": host}).status_code == 200


def test_with_a_password_other_machines_may_log_in(secure_app):
    client = secure_app.test_client()
    client.environ_base.update(REMOTE_ADDR="192.0.2.10", HTTP_HOST="backups.example")

    assert client.get("/login").status_code == 200
    assert log_in(client).status_code == 302
    assert client.get("/settings").status_code == 200


# --- gunicorn.conf.py: where the server listens ------------------------------------------


@pytest.fixture
def gunicorn_conf(tmp_path, monkeypatch):
    """Load a copy of gunicorn.conf.py from an empty folder (no project .env) with a given environment."""
    copy = tmp_path / "conf" / "gunicorn.conf.py"
    copy.parent.mkdir()
    shutil.copy(PROJECT_ROOT / "gunicorn.conf.py", copy)

    def load(**environ: str) -> dict:
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(copy))

    load.folder = copy.parent
    return load


def test_gunicorn_listens_on_loopback_only_while_no_password_is_set(gunicorn_conf, capsys):
    settings = gunicorn_conf(BIND="0.0.0.0:9000")

    assert settings["bind"] == "127.0.0.1:9000"
    assert "No ADMIN_PASSWORD is set" in capsys.readouterr().err


@pytest.mark.parametrize("variable", ["ADMIN_PASSWORD", "ADMIN_PASSWORD_HASH"])
def test_gunicorn_keeps_the_chosen_address_with_a_password(gunicorn_conf, variable):
    value = PASSWORD if variable == "ADMIN_PASSWORD" else generate_password_hash(PASSWORD)

    assert gunicorn_conf(BIND="0.0.0.0:9000", **{variable: value})["bind"] == "0.0.0.0:9000"


def test_gunicorn_reads_the_password_from_the_env_file_beside_it(gunicorn_conf):
    (gunicorn_conf.folder / ".env").write_text(f"ADMIN_PASSWORD={PASSWORD}\n")

    assert gunicorn_conf(BIND="0.0.0.0:9000")["bind"] == "0.0.0.0:9000"


@pytest.mark.parametrize("bind", ["127.0.0.1:9000", "localhost:9000", "[::1]:9000"])
def test_gunicorn_keeps_a_loopback_address_without_a_password(gunicorn_conf, bind):
    assert gunicorn_conf(BIND=bind)["bind"] == bind


@pytest.mark.parametrize("bind", ["[::]:9000", "192.0.2.10:9000", "example.org:9000"])
def test_gunicorn_replaces_any_other_address_without_a_password(gunicorn_conf, bind):
    assert gunicorn_conf(BIND=bind)["bind"] == "127.0.0.1:9000"
