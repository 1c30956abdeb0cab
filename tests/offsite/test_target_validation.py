"""Off-site targets: bad input gets a clear error by field and saves nothing (API and page)."""

from __future__ import annotations

import pytest

from app.models import OffsiteTarget
from app.services import offsite_targets

# A throwaway pair made for these tests (age-keygen); the identity opens nothing real.
RECIPIENT = "age1qwzeq24g0m5d2rgsv592qzlklszf9wkzmhrxvcde7dkmul9r4swsxxqh7c"


def good(**changes) -> dict:
    body = {
        "name": "NAS",
        "endpoint": "http://127.0.0.1:9000",
        "region": "us-east-1",
        "bucket": "backups",
        "prefix": "app/",
        "addressing": "path",
        "access_key": "AKIAIOSFODNN7EXAMPLE",
        "secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "encryption": "age",
        "recipient": RECIPIENT,
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not ...}


def stored(db) -> list[OffsiteTarget]:
    return offsite_targets.list_targets(db)


def test_a_good_target_is_saved_and_its_secrets_never_come_back(client, db):
    answer = client.post("/api/v1/settings/offsite", json=good())
    assert answer.status_code == 201, answer.json
    text = answer.get_data(as_text=True)
    assert "wJalrXUtnFEMI" not in text and "AKIAIOSFODNN7EXAMPLE" not in text
    assert answer.json["access_key"] == "AKIA…LE" and answer.json["secret_key"] == "set"
    assert answer.json["prefix"] == "app/" and answer.json["enabled"] is True
    listed = client.get("/api/v1/settings/offsite").get_data(as_text=True)
    assert "wJalrXUtnFEMI" not in listed and "AKIAIOSFODNN7EXAMPLE" not in listed
    page = client.get("/settings").get_data(as_text=True)
    assert "wJalrXUtnFEMI" not in page and "AKIAIOSFODNN7EXAMPLE" not in page
    [target] = stored(db)
    assert target.secret_key == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("endpoint", "s3.example.com", "Start the endpoint with http:// or https://"),
        ("endpoint", "file:///etc/passwd", "Only http:// and https://"),
        ("endpoint", "ftp://example.com", "Only http:// and https://"),
        ("endpoint", "http://169.254.169.254/latest/meta-data", "link-local, metadata"),
        ("endpoint", "http://[fd00:ec2::254]/", "link-local, metadata"),
        ("endpoint", "http://[fe80::1]:9000", "link-local, metadata"),
        ("endpoint", "http://[::ffff:169.254.169.254]/", "link-local, metadata"),
        ("endpoint", "http://0.0.0.0:9000", "link-local, metadata"),
        ("endpoint", "http://user:pass@example.com", "Put the keys in their own fields"),
        ("endpoint", "http://example.com/?x=1", "must not have a query"),
        ("endpoint", "http://", "has no host name"),
        ("bucket", "my..bucket", "has no “..”"),
        ("bucket", "UPPER", "lower-case"),
        ("bucket", "ab", "3 to 63"),
        ("bucket", "192.168.1.1", "3 to 63"),
        ("prefix", "/absolute", "must not start with “/”"),
        ("prefix", "a/../b", "“..”"),
        ("prefix", "a b", "may have letters"),
        ("recipient", "age1notakey", "not an age public key"),
        ("recipient", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk", "not an age public key"),
        ("recipient", RECIPIENT[:-1] + "d", "not an age public key"),
        ("region", "EU Central", "lower-case letters"),
        ("keep_last", 0, "from 1 to 1000"),
        ("access_key", "has space", "without spaces"),
        ("name", "x" * 100, "at most 64"),
        ("name", "x" * 10_000, "Too long"),
        ("endpoint", "http://example.com/" + "a" * 3_000, "too long"),
        ("endpoint", "http://example.com/" + "a" * 10_000, "Too long"),
        ("secret_key", "s" * 300, "1 to 256"),
        ("secret_key", "s" * 10_000, "Too long"),
        ("recipient", "age1" + "q" * 10_000, "Too long"),
    ],
)
def test_bad_input_is_refused_by_field_and_nothing_is_saved(client, db, field, value, message):
    answer = client.post("/api/v1/settings/offsite", json=good(**{field: value}))
    assert answer.status_code == 400
    assert message in " ".join(answer.json["errors"][field]), answer.json
    assert stored(db) == []


def test_a_name_that_resolves_to_a_metadata_address_is_refused(client, db, monkeypatch):
    # DNS is outside the product: the one stand-in, a resolver answering like a rebinding name.
    monkeypatch.setattr(offsite_targets, "resolve_host", lambda host, port: ["169.254.169.254"])
    answer = client.post("/api/v1/settings/offsite", json=good(endpoint="http://metadata.internal.example"))
    assert answer.status_code == 400
    assert "metadata.internal.example (169.254.169.254)" in answer.json["errors"]["endpoint"][0]
    assert stored(db) == []


def test_loopback_and_private_addresses_are_allowed(client, db):
    for number, endpoint in enumerate(("http://127.0.0.1:9000", "http://10.0.0.5:9000", "http://[::1]:9000"), 1):
        answer = client.post("/api/v1/settings/offsite", json=good(name=f"T{number}", endpoint=endpoint))
        assert answer.status_code == 201, answer.json
    assert len(stored(db)) == 3


def test_passphrase_mode_needs_twelve_characters_and_keeps_it_secret(client, db):
    answer = client.post("/api/v1/settings/offsite", json=good(encryption="passphrase", passphrase="short"))
    assert answer.status_code == 400 and "at least 12" in answer.json["errors"]["passphrase"][0]
    answer = client.post(
        "/api/v1/settings/offsite", json=good(encryption="passphrase", passphrase="correct horse battery")
    )
    assert answer.status_code == 201
    assert "correct horse" not in answer.get_data(as_text=True) and answer.json["passphrase"] == "set"
    assert stored(db)[0].passphrase == "correct horse battery"


def test_a_second_target_with_the_same_name_is_refused(client, db):
    assert client.post("/api/v1/settings/offsite", json=good()).status_code == 201
    answer = client.post("/api/v1/settings/offsite", json=good(name="nas"))
    assert answer.status_code == 400 and "exists already" in answer.json["errors"]["name"][0]
    assert len(stored(db)) == 1


def test_put_keeps_the_secrets_it_is_not_sent_and_validates_what_it_is(client, db):
    created = client.post("/api/v1/settings/offsite", json=good()).json
    answer = client.put(f"/api/v1/settings/offsite/{created['id']}", json={"bucket": "other-bucket", "enabled": False})
    assert answer.status_code == 200, answer.json
    [target] = stored(db)
    assert (target.bucket, target.enabled, target.secret_key) == ("other-bucket", False, good()["secret_key"])
    answer = client.put(f"/api/v1/settings/offsite/{created['id']}", json={"bucket": "bad..bucket"})
    assert answer.status_code == 400 and "bucket" in answer.json["errors"]
    assert stored(db)[0].bucket == "other-bucket"
    assert client.put("/api/v1/settings/offsite/999", json={"bucket": "x-y-z"}).status_code == 404


def test_unknown_fields_and_wrong_types_are_refused(client, db):
    answer = client.post("/api/v1/settings/offsite", json={**good(), "keep_last": "5", "colour": "red"})
    assert answer.status_code == 400
    assert answer.json["errors"] == {"keep_last": ["Must be a whole number or null."], "colour": ["Unknown field."]}
    answer = client.post("/api/v1/settings/offsite", json=[1, 2])
    assert answer.status_code == 400 and "json" in answer.json["errors"]
    assert stored(db) == []


def test_the_page_form_keeps_what_was_typed_and_marks_the_bad_field(client, db, htmx):
    form = {f"target-{key}": value for key, value in good(bucket="Bad..Bucket").items()}
    answer = client.post("/settings/offsite", data=form, headers=htmx)
    assert answer.status_code == 422
    text = answer.get_data(as_text=True)
    assert 'value="Bad..Bucket"' in text and 'aria-invalid="true"' in text
    assert "The target was not added" in text
    assert "wJalrXUtnFEMI" not in text  # a password field never echoes the secret
    assert stored(db) == []
    form["target-bucket"] = "good-bucket"
    answer = client.post("/settings/offsite", data=form, headers=htmx)
    assert answer.status_code == 200 and "Target NAS added." in answer.get_data(as_text=True)
    assert [target.bucket for target in stored(db)] == ["good-bucket"]


def test_two_targets_may_not_share_a_bucket_and_prefix(client, db):
    assert client.post("/api/v1/settings/offsite", json=good()).status_code == 201
    same = client.post("/api/v1/settings/offsite", json=good(name="Twin", endpoint="http://127.0.0.1:9000/"))
    assert same.status_code == 400
    assert "“NAS” already keeps its copies in this bucket and prefix" in same.json["errors"]["prefix"][0]
    other_prefix = client.post("/api/v1/settings/offsite", json=good(name="Twin", prefix="twin/"))
    assert other_prefix.status_code == 201
    assert len(stored(db)) == 2


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"bucket": "a.169.254.169.254"}, "bucket", "must not contain dots"),
        ({"endpoint": "http://127.0.0.1:9000"}, "addressing", "needs a host name"),
    ],
)
def test_virtual_host_addressing_cannot_reach_another_host(client, db, changes, field, message):
    body = good(**{"addressing": "virtual", "endpoint": "http://s3.example.internal:9000", **changes})
    answer = client.post("/api/v1/settings/offsite", json=body)
    assert answer.status_code == 400 and message in " ".join(answer.json["errors"][field])
    assert stored(db) == []


def test_a_virtual_host_name_resolving_to_a_metadata_address_is_refused(client, db, monkeypatch):
    # DNS is outside the product: "backups.evil.example" resolves to the metadata service.
    monkeypatch.setattr(
        offsite_targets,
        "resolve_host",
        lambda host, port: ["169.254.169.254"] if host.startswith("backups.") else ["203.0.113.7"],
    )
    answer = client.post(
        "/api/v1/settings/offsite", json=good(addressing="virtual", endpoint="http://evil.example:9000")
    )
    assert answer.status_code == 400
    assert "backups.evil.example (169.254.169.254)" in answer.json["errors"]["endpoint"][0]


def test_each_request_checks_the_host_it_goes_to_not_only_the_form(make_app, monkeypatch):
    """A name that resolved to a public address when saved and to the metadata service now:
    the request is refused before anything is sent."""
    from app.models import OffsiteTarget
    from app.services import offsite

    app = make_app()
    target = OffsiteTarget(
        name="t",
        endpoint="http://rebinding.example:9000",
        region="us-east-1",
        bucket="backups",
        prefix="",
        addressing="path",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="x" * 40,
        encryption="age",
        recipient=RECIPIENT,
    )
    answers = iter([["203.0.113.7"], ["169.254.169.254"]])  # the check in client_for, then the request's
    monkeypatch.setattr(offsite_targets, "resolve_host", lambda host, port: next(answers))
    client = offsite.client_for(app.config, target)
    with pytest.raises(offsite_targets.TargetError, match="link-local, metadata"):
        client.head_bucket(Bucket="backups")


@pytest.mark.parametrize(
    "endpoint", ["http://169.254.169.254./", "http://2852039166/", "http://0xA9FEA9FE/", "http://0251.0376.0251.0376/"]
)
def test_other_spellings_of_the_metadata_address_are_refused(client, db, endpoint):
    answer = client.post("/api/v1/settings/offsite", json=good(endpoint=endpoint))
    assert answer.status_code == 400 and "link-local, metadata" in answer.json["errors"]["endpoint"][0]
