"""The Off-site copies pages without a browser: edit, enable/disable, delete, no JavaScript."""

from __future__ import annotations

from app.services import offsite_targets
from tests.offsite.test_target_validation import good


def add(client) -> int:
    answer = client.post("/api/v1/settings/offsite", json=good())
    assert answer.status_code == 201
    return answer.json["id"]


def test_the_edit_page_shows_everything_but_the_secrets_and_an_empty_secret_keeps_it(client, db):
    target_id = add(client)
    page = client.get(f"/settings/offsite/{target_id}/edit").get_data(as_text=True)
    assert 'value="backups"' in page and 'value="AKIAIOSFODNN7EXAMPLE"' in page
    assert "wJalrXUtnFEMI" not in page
    form = {key: value for key, value in good(bucket="renamed-bucket", secret_key="").items()}
    form["enabled"] = "y"
    answer = client.post(f"/settings/offsite/{target_id}", data=form)
    assert answer.status_code == 302
    [target] = offsite_targets.list_targets(db)
    assert target.bucket == "renamed-bucket" and target.secret_key == good()["secret_key"]
    page = client.get("/settings").get_data(as_text=True)
    assert "Target NAS saved." in page


def test_a_bad_edit_answers_422_keeps_the_input_and_changes_nothing(client, db):
    target_id = add(client)
    form = good(bucket="bad..bucket", endpoint="http://[fd00:ec2::254]/")
    answer = client.post(f"/settings/offsite/{target_id}", data=form)
    assert answer.status_code == 422
    text = answer.get_data(as_text=True)
    assert 'value="bad..bucket"' in text and "The target was not saved" in text and "metadata" in text
    assert offsite_targets.list_targets(db)[0].bucket == "backups"


def test_disable_enable_and_delete_without_javascript(client, db):
    target_id = add(client)
    assert client.post(f"/settings/offsite/{target_id}/enabled", data={"enabled": "0"}).status_code == 302
    assert offsite_targets.list_targets(db)[0].enabled is False
    assert "Disabled" in client.get("/settings").get_data(as_text=True)
    client.post(f"/settings/offsite/{target_id}/enabled", data={"enabled": "1"})
    assert offsite_targets.list_targets(db)[0].enabled is True
    assert client.post(f"/settings/offsite/{target_id}/delete").status_code == 302
    assert offsite_targets.list_targets(db) == []
    assert client.post(f"/settings/offsite/{target_id}/delete").status_code == 404
    assert client.get(f"/settings/offsite/{target_id}/edit").status_code == 404


def test_the_fetch_page_refuses_keys_outside_the_prefix(client):
    target_id = add(client)
    assert client.get(f"/settings/offsite/{target_id}/fetch?key=../etc/passwd").status_code == 404
    key = "app/backup-20260101T000000.000000Z-manual.sqlite3.zst.age"
    page = client.get(f"/settings/offsite/{target_id}/fetch?key={key}")
    assert page.status_code == 200 and "Age private key" in page.get_data(as_text=True)
    empty = client.post(f"/settings/offsite/{target_id}/fetch", data={"key": key, "identity": " "})
    assert empty.status_code == 422 and "Paste the private key" in empty.get_data(as_text=True)
