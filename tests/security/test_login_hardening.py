"""Login hardening: a throttle on wrong passwords, sessions that end with the password, Secure cookies."""

from __future__ import annotations

from tests.security.support import PASSWORD


def login(client, password: str):
    return client.post("/login", data={"password": password})


def test_five_wrong_passwords_lock_out_that_address_even_for_the_right_one(secure_app):
    client = secure_app.test_client()
    for _ in range(5):
        assert login(client, "wrong password").status_code == 401
    refused = login(client, PASSWORD)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert b"Too many wrong passwords" in refused.data
    assert client.get("/settings").status_code == 302  # still not logged in

    other = secure_app.test_client()
    answer = other.post("/login", data={"password": PASSWORD}, environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert answer.status_code == 302  # another address is not locked out


def test_a_right_password_clears_earlier_failures(secure_app):
    client = secure_app.test_client()
    for _ in range(4):
        login(client, "wrong password")
    assert login(client, PASSWORD).status_code == 302
    client.post("/logout")
    for _ in range(4):
        assert login(client, "wrong password").status_code == 401


def test_changing_the_password_ends_existing_sessions(make_app, tmp_path):
    old = make_app(ADMIN_PASSWORD=PASSWORD)
    client = old.test_client()
    assert login(client, PASSWORD).status_code == 302
    assert client.get("/settings").status_code == 200
    cookie = client.get_cookie("session").value

    new = make_app(ADMIN_PASSWORD="a different password")
    other = new.test_client()
    other.set_cookie("session", cookie)
    answer = other.get("/settings")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]

    same = make_app(ADMIN_PASSWORD=PASSWORD)  # a restart with the same password keeps it
    again = same.test_client()
    again.set_cookie("session", cookie)
    assert again.get("/settings").status_code == 200


def test_session_cookie_is_secure_when_configured(make_app):
    app = make_app(ADMIN_PASSWORD=PASSWORD, SESSION_COOKIE_SECURE="true")
    answer = app.test_client().post("/login", data={"password": PASSWORD}, base_url="https://localhost")
    cookie = answer.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
