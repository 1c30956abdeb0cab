"""Backups of a PostgreSQL data database with pg_dump -Fc: consistent under writes, checked, restored whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.services import runs
from app.services.backups import BackupError, list_backups
from app.services.pg_backups import check_dump, connection_for, perform_pg_backup, restore_pg_backup
from tests.settings.html_tree import parse
from tests.support.postgres import PostgresCluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.xdist_group("postgres")

# Each transaction adds one item and counts it: in any consistent snapshot the two agree.
WRITER = """
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    while True:
        with conn.transaction():
            conn.execute("INSERT INTO item (payload) VALUES (repeat('x', 200))")
            conn.execute("UPDATE counter SET n = n + 1")
        print("wrote", flush=True)
"""


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def data_url(postgres: PostgresCluster, postgres_url: str) -> str:
    """A data database with 50 000 items and their count."""
    name = postgres_url.rsplit("/", 1)[1]
    postgres.psql(
        "CREATE TABLE item (id bigserial PRIMARY KEY, payload text);"
        "CREATE TABLE counter (n bigint NOT NULL); INSERT INTO counter VALUES (0);"
        "INSERT INTO item (payload) SELECT repeat('x', 200) FROM generate_series(1, 50000);"
        "UPDATE counter SET n = 50000;",
        database=name,
    )
    return postgres_url


def counts(postgres: PostgresCluster, url: str) -> tuple[int, int]:
    """(rows in item, the counter) of a database."""
    items, counted = postgres.psql(
        "SELECT (SELECT count(*) FROM item), (SELECT n FROM counter)", url.rsplit("/", 1)[1]
    ).split("|")
    return int(items), int(counted)


def test_a_dump_taken_while_another_process_writes_restores_to_a_consistent_snapshot(postgres, data_url, tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, libpq(data_url)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "wrote"
        backup = perform_pg_backup(data_url, tmp_path / "backups", kind="manual")
        wait_for(lambda: counts(postgres, data_url)[0] > 50_000 + 50, 10)  # still writing after the dump
    finally:
        writer.kill()
        writer.wait()
    assert backup.name.endswith("-manual.dump")
    assert oct(backup.path.stat().st_mode & 0o777) == "0o600"
    assert [entry.name for entry in list_backups(tmp_path / "backups")] == [backup.name]
    live_before = counts(postgres, data_url)

    restore = restore_pg_backup(data_url, tmp_path / "backups", backup.name)

    items, counted = counts(postgres, data_url)
    assert items == counted  # one snapshot: every item with its count, nothing half-written
    assert 50_000 <= items < live_before[0]  # the dump's moment, not the later writes
    # The safety dump holds the data the restore replaced, and restores to it.
    restore_pg_backup(data_url, tmp_path / "backups", restore.safety.name)
    assert counts(postgres, data_url) == live_before


def test_the_password_goes_in_the_environment_never_in_the_tools_command_line():
    connection = connection_for("postgresql+psycopg://app:s3cret@db.internal:5432/data")
    assert connection.dsn == "postgresql://app@db.internal:5432/data"
    assert connection.env["PGPASSWORD"] == "s3cret"


def test_a_truncated_dump_is_caught_although_its_table_of_contents_reads(data_url, tmp_path):
    backup = perform_pg_backup(data_url, tmp_path / "backups")
    truncated = tmp_path / "truncated.dump"
    data = backup.path.read_bytes()
    truncated.write_bytes(data[: len(data) * 9 // 10])
    listing = subprocess.run(["pg_restore", "--list", str(truncated)], capture_output=True)
    assert listing.returncode == 0  # the table of contents alone does not notice
    with pytest.raises(BackupError, match="Reading the whole dump failed"):
        check_dump(truncated)


def test_a_restore_of_a_damaged_dump_changes_nothing_and_takes_no_safety_dump(postgres, data_url, tmp_path):
    backups = tmp_path / "backups"
    backup = perform_pg_backup(data_url, backups)
    data = backup.path.read_bytes()
    os.chmod(backup.path, 0o600)
    backup.path.write_bytes(data[: len(data) // 2])
    before = counts(postgres, data_url)
    with pytest.raises(BackupError):
        restore_pg_backup(data_url, backups, backup.name)
    assert counts(postgres, data_url) == before
    assert [entry.name for entry in list_backups(backups)] == [backup.name]


def test_a_pg_dump_older_than_the_server_is_refused_with_a_clear_message(data_url, tmp_path, monkeypatch):
    # The one stand-in: an old pg_dump cannot be installed next to the real one, so a script
    # on the PATH answers --version as PostgreSQL 13's would (and would fail if ever run to dump).
    fake_bin = tmp_path / "old-client"
    fake_bin.mkdir()
    fake = fake_bin / "pg_dump"
    fake.write_text('#!/bin/sh\n[ "$1" = "--version" ] && echo "pg_dump (PostgreSQL) 13.16" && exit 0\nexit 99\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(BackupError, match=r"pg_dump 13 cannot back up a PostgreSQL 15 server.*version 15 or later"):
        perform_pg_backup(data_url, tmp_path / "backups")
    assert not (tmp_path / "backups").exists() or list((tmp_path / "backups").iterdir()) == []


def test_the_app_backs_up_verifies_and_restores_postgres_data(make_app, postgres, data_url):
    app = make_app(DATABASE_URL=data_url)
    client = app.test_client()
    answer = client.post("/api/v1/settings/backup-db")
    assert answer.status_code == 200, answer.json
    name = answer.json["file"]
    assert name.endswith(".dump")
    listed = client.get("/api/v1/settings/backups").json
    assert [(entry["file"], entry["sha256"]) for entry in listed["backups"]] == [(name, answer.json["sha256"])]

    assert client.post("/api/v1/settings/scheduler/verify_backups/run").status_code == 202
    wait_for(lambda: client.get("/api/v1/settings/backups").json["backups"][0]["verified_at"], 30)

    postgres.psql("DELETE FROM item WHERE id > 10", data_url.rsplit("/", 1)[1])
    started = client.post(f"/api/v1/settings/backups/{name}/restore", json={"confirm": name})
    assert started.status_code == 202, started.json
    run_id = started.json["run"]["id"]

    def finished():
        run = client.get(f"/api/v1/settings/scheduler/runs/{run_id}").json["run"]
        return run if run["status"] != "running" else None

    run = wait_for(finished, 60)
    assert run["status"] == "success", run
    assert counts(postgres, data_url) == (50_000, 50_000)
    kinds = sorted(entry["kind"] for entry in client.get("/api/v1/settings/backups").json["backups"])
    assert kinds == ["manual", "pre-restore"]


def test_the_restore_page_compares_a_dumps_tables_and_restores_it_after_the_typed_name(make_app, postgres, data_url):
    # With a password in the URL (trust authentication ignores it): the page must not show it.
    app = make_app(DATABASE_URL=data_url.replace("://postgres@", "://postgres:secret@"))
    client = app.test_client()
    name = client.post("/api/v1/settings/backup-db").json["file"]
    database = data_url.rsplit("/", 1)[1]
    postgres.psql("DELETE FROM item WHERE id > 10; CREATE TABLE added_since (x int)", database)

    answer = client.get(f"/settings/backups/{name}/restore")
    assert answer.status_code == 200
    page = parse(answer.get_data(as_text=True))
    text = page.find("section", class_="narrow").text
    assert data_url in text
    assert "secret" not in answer.get_data(as_text=True)  # the password is never shown
    assert f"taken of the database {database}" in text
    rows = [[cell.text for cell in row.find_all(None)[0:3]] for row in page.by_id("restore-tables").find_all("tr")[1:]]
    assert rows == [
        ["public.added_since", "No", "Yes"],
        ["public.counter", "Yes", "Yes"],
        ["public.item", "Yes", "Yes"],
    ]
    assert "public.added_since" in page.by_id("kept-tables").text
    assert page.find("label", for_="confirm") is not None
    assert any(button.text == "Restore this backup" for button in page.find_all("button"))

    wrong = client.post(f"/settings/backups/{name}/restore", data={"confirm": "not it"})
    assert wrong.status_code == 422
    assert counts(postgres, data_url) == (10, 50_000)  # nothing changed

    started = client.post(f"/settings/backups/{name}/restore", data={"confirm": name})
    assert started.status_code == 302
    db = app.extensions["db"]
    run = wait_for(lambda: (run := runs.recent_runs(db, "backup_db", 1)[0]).status != "running" and run, 60)
    assert (run.trigger, run.status) == ("restore", "success"), run.error
    assert counts(postgres, data_url) == (50_000, 50_000)
    kinds = sorted(entry["kind"] for entry in client.get("/api/v1/settings/backups").json["backups"])
    assert kinds == ["manual", "pre-restore"]


def test_the_restore_page_refuses_a_sqlite_backup_for_postgres_data(make_app, data_url):
    app = make_app(DATABASE_URL=data_url)
    folder = Path(app.config["BACKUPS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    name = "backup-20260101T000000.000000Z-manual.sqlite3"
    (folder / name).write_bytes(b"SQLite format 3\x00" + bytes(4080))
    answer = app.test_client().get(f"/settings/backups/{name}/restore")
    assert answer.status_code == 400
    assert f"{name} is a SQLite backup; the data database is PostgreSQL." in answer.get_data(as_text=True)
    assert b"Restore this backup" not in answer.data


def test_data_and_state_must_not_be_the_same_postgres_database(make_app, postgres_url):
    from app.config import ConfigError

    with pytest.raises(ConfigError, match="another file \\(or database\\)"):
        make_app(DATABASE_URL=postgres_url, STATE_DATABASE_URL=postgres_url)


def test_a_password_given_as_a_query_parameter_never_reaches_a_command_line():
    from app.services.pg_backups import connection_for

    connection = connection_for("postgresql+psycopg://app@db:5432/app?password=S3cretPw&sslmode=require")
    assert "S3cretPw" not in connection.dsn and "sslmode=require" in connection.dsn
    assert connection.env["PGPASSWORD"] == "S3cretPw"


def test_the_preview_reads_names_with_spaces_and_names_live_views_the_dump_lacks(postgres, data_url, tmp_path):
    from app.services.pg_backups import preview_pg_restore

    name = data_url.rsplit("/", 1)[1]
    postgres.psql('CREATE SCHEMA "My S"; CREATE TABLE "My S"."a b" (x int);', database=name)
    backup = perform_pg_backup(data_url, tmp_path / "backups")
    postgres.psql("CREATE VIEW item_view AS SELECT id FROM item;", database=name)
    preview = preview_pg_restore(data_url + "?password=S3cretPw", tmp_path / "backups", backup.name)
    assert "My S.a b" in preview.dump_tables and preview.kept_tables == []
    assert preview.kept_views == ["public.item_view"]
    assert "S3cretPw" not in preview.database


def test_a_restore_that_fails_after_its_safety_dump_changes_nothing_and_lists_the_safety_dump(
    make_app, postgres, data_url
):
    """A live view reading a table the dump replaces makes pg_restore stop (one transaction)."""
    app = make_app(DATABASE_URL=data_url)
    client = app.test_client()
    name = client.post("/api/v1/settings/backup-db").json["file"]
    postgres.psql(
        "CREATE VIEW item_view AS SELECT id FROM item; DELETE FROM item WHERE id > 10;", data_url.rsplit("/", 1)[1]
    )
    run_id = client.post(f"/api/v1/settings/backups/{name}/restore", json={"confirm": name}).json["run"]["id"]

    def finished():
        run = client.get(f"/api/v1/settings/scheduler/runs/{run_id}").json["run"]
        return run if run["status"] != "running" else None

    run = wait_for(finished, 60)
    assert run["status"] == "failed" and "nothing was changed" in run["error"]
    assert counts(postgres, data_url)[0] == 10  # the live data as it was
    kinds = sorted(entry["kind"] for entry in client.get("/api/v1/settings/backups").json["backups"])
    assert kinds == ["manual", "pre-restore"]  # the safety dump is listed, not an orphan file
