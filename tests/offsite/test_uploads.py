"""Every backup is sealed and uploaded to each target, verified, pruned; against a real S3 server."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from app.models import OffsiteCopy
from app.services import offsite, offsite_targets
from tests.offsite.support import IDENTITY, RECIPIENT, OffsiteApp


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_backup_is_uploaded_sealed_and_opens_with_the_standard_age_and_zstd_tools(offsite_app, tmp_path):
    offsite_app.add_target()
    offsite_app.write_rows(2000)
    outcome = offsite_app.backup()

    run = outcome.run
    assert run.status == "success", run.error
    assert run.detail == "Off-site copies: rclone: verified."
    objects = offsite_app.s3.objects()
    key = f"app/{run.file}.zst.age"
    assert list(objects) == [key]
    sealed = objects[key].read_bytes()
    assert sealed.startswith(b"age-encryption.org/v1\n-> X25519 ")
    local = (offsite_app.backups_dir / run.file).read_bytes()
    assert local not in sealed and len(sealed) < len(local)  # compressed, and not readable as is

    identity = tmp_path / "key.txt"
    identity.write_text(IDENTITY + "\n")
    opened = subprocess.run(
        f"age -d -i {identity} {objects[key]} | zstd -d -q -c", shell=True, capture_output=True, check=True
    ).stdout
    assert opened == local

    head = offsite_app.s3.client().head_object(Bucket="backups", Key=key)
    metadata = {k.lower(): v for k, v in head["Metadata"].items()}
    assert metadata["plain-sha256"] == sha256(local) == run.sha256
    assert metadata["sealed-sha256"] == sha256(sealed)
    assert metadata["written-by"] == "settings-scheduler"
    [target] = offsite_targets.list_targets(offsite_app.db)
    assert target.last_result == "ok" and target.last_upload_at is not None
    assert run.file in target.last_message and "uploaded and verified" in target.last_message


def test_passphrase_copies_open_with_the_passphrase_and_not_without_it(offsite_app):
    created = offsite_app.add_target(encryption="passphrase", passphrase="correct horse battery staple", recipient=None)
    offsite_app.write_rows(500)
    run = offsite_app.backup().run
    assert run.status == "success", run.error
    [sealed] = offsite_app.s3.objects().values()
    assert b"-> scrypt " in sealed.read_bytes()[:200]
    key = f"app/{run.file}.zst.age"

    wrong = offsite_app.client.post(
        f"/api/v1/settings/offsite/{created['id']}/copies/fetch", json={"key": key, "passphrase": "wrong horse battery"}
    )
    assert wrong.status_code == 400 and "passphrase" in wrong.json["error"].lower()
    before = {path.name for path in offsite_app.backups_dir.iterdir()}
    right = offsite_app.client.post(
        f"/api/v1/settings/offsite/{created['id']}/copies/fetch",
        json={"key": key, "passphrase": "correct horse battery staple"},
    )
    assert right.status_code == 201, right.json
    assert right.json["kind"] == "uploaded" and right.json["sha256"] == run.sha256
    after = {path.name for path in offsite_app.backups_dir.iterdir()}
    assert after - before == {right.json["file"]}  # the wrong passphrase left nothing behind


def test_a_copy_brought_back_is_byte_identical_and_restorable(offsite_app):
    created = offsite_app.add_target()
    offsite_app.write_rows(300)
    run = offsite_app.backup().run
    key = f"app/{run.file}.zst.age"
    listed = offsite_app.client.get(f"/api/v1/settings/offsite/{created['id']}/copies").json["copies"]
    assert [(copy["key"], copy["ours"], copy["plain_sha256"]) for copy in listed] == [(key, True, run.sha256)]

    answer = offsite_app.client.post(
        f"/api/v1/settings/offsite/{created['id']}/copies/fetch", json={"key": key, "identity": IDENTITY}
    )
    assert answer.status_code == 201, answer.json
    fetched = offsite_app.backups_dir / answer.json["file"]
    assert fetched.read_bytes() == (offsite_app.backups_dir / run.file).read_bytes()
    restore = offsite_app.client.post(
        f"/api/v1/settings/backups/{fetched.name}/restore", json={"confirm": fetched.name}
    )
    assert restore.status_code == 202


def test_a_wrong_identity_or_a_tampered_copy_is_refused_and_nothing_is_kept(offsite_app):
    created = offsite_app.add_target()
    offsite_app.write_rows(300)
    run = offsite_app.backup().run
    key = f"app/{run.file}.zst.age"
    url = f"/api/v1/settings/offsite/{created['id']}/copies/fetch"
    before = sorted(path.name for path in offsite_app.backups_dir.iterdir())

    other = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True).stdout
    answer = offsite_app.client.post(url, json={"key": key, "identity": other})
    assert answer.status_code == 400 and "does not open" in answer.json["error"]

    stored = offsite_app.s3.objects()[key]
    data = bytearray(stored.read_bytes())
    data[-100] ^= 0x01
    stored.write_bytes(bytes(data))
    answer = offsite_app.client.post(url, json={"key": key, "identity": IDENTITY})
    assert answer.status_code == 400 and "differs from what was uploaded" in answer.json["error"]

    answer = offsite_app.client.post(url, json={"key": "elsewhere/secret.txt", "identity": IDENTITY})
    assert answer.status_code == 400 and "not a sealed backup" in answer.json["error"]
    assert sorted(path.name for path in offsite_app.backups_dir.iterdir()) == before


def test_retention_keeps_the_last_n_of_our_copies_and_never_touches_other_objects(offsite_app):
    offsite_app.add_target(keep_last=2)
    client = offsite_app.s3.client()
    foreign = "app/backup-20200101T000000.000000Z-manual.sqlite3.zst.age"  # looks like ours, is not ours
    client.put_object(Bucket="backups", Key=foreign, Body=b"someone else's")
    client.put_object(Bucket="backups", Key="app/notes.txt", Body=b"not a backup")
    client.put_object(Bucket="backups", Key="other/backup-x.sqlite3.zst.age", Body=b"outside the prefix")
    files = []
    for _ in range(4):
        offsite_app.write_rows(10)
        files.append(offsite_app.backup().run.file)

    keys = set(offsite_app.s3.objects())
    assert {f"app/{name}.zst.age" for name in files[-2:]} <= keys
    assert not {f"app/{name}.zst.age" for name in files[:2]} & keys
    assert {foreign, "app/notes.txt", "other/backup-x.sqlite3.zst.age"} <= keys
    with offsite_app.db.session() as session:
        assert session.query(OffsiteCopy).count() == 2
    # Local backups are all still here: off-site retention is the target's own.
    assert all((offsite_app.backups_dir / name).exists() for name in files)


def test_a_second_target_failing_makes_the_run_success_with_warnings(offsite_app):
    offsite_app.add_target(name="good")
    offsite_app.add_target(name="bad", prefix="bad/", secret_key="not-the-right-secret-key-at-all")
    offsite_app.write_rows(100)
    run = offsite_app.backup().run

    assert run.status == "warning"
    assert "bad: The server refused the access key or secret key" in run.error
    assert run.detail.startswith("Off-site copies: good: verified; bad: failed:")
    assert (offsite_app.backups_dir / run.file).exists()
    assert list(offsite_app.s3.objects()) == [f"app/{run.file}.zst.age"]
    targets = {target.name: target for target in offsite_targets.list_targets(offsite_app.db)}
    assert targets["good"].last_result == "ok" and targets["bad"].last_result == "failed"
    answer = offsite_app.client.get(f"/api/v1/settings/scheduler/runs/{run.id}").json["run"]
    assert answer["status"] == "warning"


def test_a_missing_bucket_is_named(offsite_app):
    offsite_app.add_target(bucket="no-such-bucket")
    offsite_app.write_rows(10)
    run = offsite_app.backup().run
    assert run.status == "warning"
    assert "The bucket no-such-bucket does not exist" in run.error


@pytest.mark.parametrize("addressing", ["path"])
def test_test_connection_writes_reads_and_deletes_a_probe(offsite_app, addressing):
    created = offsite_app.add_target(addressing=addressing)
    answer = offsite_app.client.post(f"/api/v1/settings/offsite/{created['id']}/test")
    assert answer.json["ok"] is True and "wrote, read back and deleted" in answer.json["message"]
    assert offsite_app.s3.objects() == {}  # the probe is gone
    bad = offsite_app.add_target(name="wrong", prefix="wrong/", secret_key="x" * 40)
    answer = offsite_app.client.post(f"/api/v1/settings/offsite/{bad['id']}/test")
    assert answer.json["ok"] is False and "refused the access key or secret key" in answer.json["message"]
    assert SECRET_NOT_IN(answer.get_data(as_text=True))


def SECRET_NOT_IN(text: str) -> bool:
    return "x" * 40 not in text and "wJalrXUtnFEMI" not in text


def test_disabled_targets_get_nothing(offsite_app):
    created = offsite_app.add_target()
    offsite_app.client.put(f"/api/v1/settings/offsite/{created['id']}", json={"enabled": False})
    offsite_app.write_rows(10)
    run = offsite_app.backup().run
    assert run.status == "success" and run.detail is None
    assert offsite_app.s3.objects() == {}


def test_the_recipient_can_not_open_what_it_sealed_without_the_identity(offsite_app):
    """The server holds only the public key: nothing in the state database opens a copy."""
    offsite_app.add_target()
    offsite_app.write_rows(10)
    offsite_app.backup()
    state = offsite_app.app.config["STATE_DATABASE_PATH"]
    text = b"".join(Path(state + suffix).read_bytes() for suffix in ("", "-wal"))
    assert RECIPIENT.encode() in text and IDENTITY.encode() not in text
    assert offsite.SEALED_SUFFIX == ".zst.age"


def test_the_whole_cycle_works_on_each_server_implementation(make_app, s3_server):
    """rclone and SeaweedFS differ (metadata case, multipart ETags): upload, verify, list,
    prune and fetch work on both."""
    s3_server.make_bucket("backups")
    app = make_app(OFFSITE_TIMEOUT_SECONDS=5, OFFSITE_PART_MB=5)  # 12 MB: a multipart upload of 3 parts
    offsite_app = OffsiteApp(app, s3_server)
    created = offsite_app.add_target(keep_last=2, access_key=s3_server.access_key, secret_key=s3_server.secret_key)
    files = []
    for _ in range(3):
        offsite_app.write_random(4)
        run = offsite_app.backup().run
        assert run.status == "success", run.error
        files.append(run.file)
    keys = sorted(item["Key"] for item in s3_server.client().list_objects_v2(Bucket="backups")["Contents"])
    assert keys == sorted(f"app/{name}.zst.age" for name in files[1:])
    listed = offsite_app.client.get(f"/api/v1/settings/offsite/{created['id']}/copies").json["copies"]
    assert [copy["backup"] for copy in listed] == [files[2], files[1]]
    answer = offsite_app.client.post(
        f"/api/v1/settings/offsite/{created['id']}/copies/fetch", json={"key": listed[0]["key"], "identity": IDENTITY}
    )
    assert answer.status_code == 201, answer.json
    assert (offsite_app.backups_dir / answer.json["file"]).read_bytes() == (
        offsite_app.backups_dir / files[2]
    ).read_bytes()


def test_a_download_a_killed_worker_left_behind_is_removed_by_the_next_fetch(offsite_app):
    created = offsite_app.add_target()
    offsite_app.write_rows(10)
    run = offsite_app.backup().run
    old = offsite_app.backups_dir / ".offsite-down-0123456789abcdef.tmp"
    half = offsite_app.backups_dir / ".unseal-0123456789abcdef.tmp"
    fresh = offsite_app.backups_dir / ".offsite-down-fedcba9876543210.tmp"  # another fetch, still arriving
    for path in (old, half, fresh):
        path.write_bytes(b"partial")
    day_ago = time.time() - 25 * 3600
    for path in (old, half):
        os.utime(path, (day_ago, day_ago))
    answer = offsite_app.client.post(
        f"/api/v1/settings/offsite/{created['id']}/copies/fetch",
        json={"key": f"app/{run.file}.zst.age", "identity": IDENTITY},
    )
    assert answer.status_code == 201
    assert not old.exists() and not half.exists() and fresh.exists()


def test_a_copy_that_opens_but_is_not_a_database_is_refused_with_the_reason(offsite_app):
    created = offsite_app.add_target()
    import io

    from app.services.sealing import seal

    junk = offsite_app.data_path.parent / "junk.txt"
    junk.write_bytes(b"not a database, only text\n" * 100)
    sealed = io.BytesIO()
    seal(junk, sealed, recipient=RECIPIENT)
    key = "app/backup-20260101T000000.000000Z-manual.sqlite3.zst.age"
    offsite_app.s3.client().put_object(Bucket="backups", Key=key, Body=sealed.getvalue())
    answer = offsite_app.client.post(
        f"/api/v1/settings/offsite/{created['id']}/copies/fetch", json={"key": key, "identity": IDENTITY}
    )
    assert answer.status_code == 400 and "not a SQLite database" in answer.json["error"]
    assert [path.name for path in offsite_app.backups_dir.iterdir()] == []


def test_a_foreign_copy_larger_than_the_upload_limit_is_not_downloaded(make_app, s3):
    app = make_app(MAX_UPLOAD_MB=1)
    offsite_app = OffsiteApp(app, s3)
    created = offsite_app.add_target()
    key = "app/backup-20990101T000000.000000Z-manual.sqlite3.zst.age"
    s3.client().put_object(Bucket="backups", Key=key, Body=os.urandom(2 * 1024 * 1024))
    answer = offsite_app.client.post(
        f"/api/v1/settings/offsite/{created['id']}/copies/fetch", json={"key": key, "identity": IDENTITY}
    )
    assert answer.status_code == 400 and "more than this app accepts from outside" in answer.json["error"]


def test_copies_made_before_an_encryption_change_still_open_with_their_own_key(offsite_app):
    created = offsite_app.add_target()
    offsite_app.write_rows(20)
    old = offsite_app.backup().run
    changed = offsite_app.client.put(
        f"/api/v1/settings/offsite/{created['id']}",
        json={"encryption": "passphrase", "passphrase": "correct horse battery staple"},
    )
    assert changed.status_code == 200
    offsite_app.write_rows(20)
    new = offsite_app.backup().run
    url = f"/api/v1/settings/offsite/{created['id']}/copies/fetch"
    page = offsite_app.client.get(f"/settings/offsite/{created['id']}/fetch?key=app/{old.file}.zst.age")
    assert 'id="identity"' in page.get_data(as_text=True).split("<details")[0]  # the age key is asked first
    by_key = offsite_app.client.post(url, json={"key": f"app/{old.file}.zst.age", "identity": IDENTITY})
    assert by_key.status_code == 201, by_key.json
    by_passphrase = offsite_app.client.post(
        url, json={"key": f"app/{new.file}.zst.age", "passphrase": "correct horse battery staple"}
    )
    assert by_passphrase.status_code == 201, by_passphrase.json


def test_off_site_copies_work_with_the_state_on_postgresql(make_app, s3, postgres_url):
    """Several hosts keep targets and the catalogue in PostgreSQL: the same cycle works there."""
    app = make_app(STATE_DATABASE_URL=postgres_url, OFFSITE_TIMEOUT_SECONDS=5)
    offsite_app = OffsiteApp(app, s3)
    created = offsite_app.add_target(keep_last=1)
    for _ in range(2):
        offsite_app.write_rows(10)
        run = offsite_app.backup().run
        assert run.status == "success", run.error
    assert list(s3.objects()) == [f"app/{run.file}.zst.age"]
    answer = offsite_app.client.post(
        f"/api/v1/settings/offsite/{created['id']}/copies/fetch",
        json={"key": f"app/{run.file}.zst.age", "identity": IDENTITY},
    )
    assert answer.status_code == 201, answer.json
