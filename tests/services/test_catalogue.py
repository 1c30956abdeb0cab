"""The backup list comes from the catalogue: with a shared PostgreSQL state database every host
shows the same list, and a file in another host's folder says so instead of failing to download."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect

from app.db import Database
from app.models import utcnow
from app.services import catalogue
from app.services.backup_tasks import BACKUP_TASK
from app.services.runner import claim_task, complete_task

API = "/api/v1/settings/backups"
ON_A = "This backup is on host host-a, not on this one (BACKUPS_DIR is not shared)."


@pytest.fixture
def two_hosts(make_app, postgres_url, tmp_path):
    """Two instances with their own folders (data, backups) on one PostgreSQL state database."""

    def host(name: str, backups_dir: Path | None = None):
        return make_app(
            INSTANCE_PATH=str(tmp_path / name),
            BACKUPS_DIR=str(backups_dir or tmp_path / name / "backups"),
            STATE_DATABASE_URL=postgres_url,
            HOST_NAME=name,
        )

    return host


def make_backup(app) -> dict:
    answer = app.test_client().post("/api/v1/settings/backup-db")
    assert answer.status_code == 200, answer.json
    return answer.json


@pytest.mark.xdist_group("postgres")
def test_a_backup_made_on_one_host_is_listed_on_another_as_on_that_host(two_hosts):
    a, b = two_hosts("host-a"), two_hosts("host-b")
    made = make_backup(a)
    name = made["file"]

    on_a = a.test_client().get(API).json["backups"]
    on_b = b.test_client().get(API).json["backups"]
    assert [(entry["file"], entry["here"], entry["host"]) for entry in on_a] == [(name, True, "host-a")]
    assert [(entry["file"], entry["here"], entry["host"]) for entry in on_b] == [(name, False, "host-a")]
    assert on_b[0]["sha256"] == made["sha256"] and on_b[0]["size"] == made["size"]

    cli = b.test_cli_runner().invoke(args=["backup", "list"])
    assert cli.exit_code == 0, cli.output
    assert cli.output.strip().endswith(f"{made['kind']}  on host host-a")
    assert cli.output.startswith(name)

    page = b.test_client().get("/settings").get_data(as_text=True)
    assert "On host host-a" in page
    assert 'id="backups-elsewhere"' in page
    for action in ("restore", "delete"):  # no controls for a file this host does not hold
        assert f"/settings/backups/{name}/{action}" not in page
    assert f'href="/settings/backups/{name}"' not in page
    page_a = a.test_client().get("/settings").get_data(as_text=True)
    assert "On host" not in page_a and f'href="/settings/backups/{name}"' in page_a


@pytest.mark.xdist_group("postgres")
def test_another_hosts_backup_answers_404_naming_its_host_everywhere(two_hosts):
    a, b = two_hosts("host-a"), two_hosts("host-b")
    name = make_backup(a)["file"]
    client = b.test_client()

    download = client.get(f"{API}/{name}")
    assert download.status_code == 404
    assert download.json == {"error": ON_A}
    assert client.delete(f"{API}/{name}").json == {"error": ON_A}
    restore = client.post(f"{API}/{name}/restore", json={"confirm": name})
    assert (restore.status_code, restore.json) == (404, {"error": ON_A})
    for path in (f"/settings/backups/{name}", f"/settings/backups/{name}/restore"):
        page = client.get(path)
        assert page.status_code == 404
        assert ON_A in page.get_data(as_text=True)
    assert client.post(f"/settings/backups/{name}/delete").status_code == 404
    cli = b.test_cli_runner().invoke(args=["backup", "restore", name, "--yes"])
    assert cli.exit_code == 1 and ON_A in cli.output

    assert (Path(a.config["BACKUPS_DIR"]) / name).is_file()  # B changed nothing
    assert [entry["file"] for entry in a.test_client().get(API).json["backups"]] == [name]
    assert client.get(f"{API}/backup-20260101T000000.000000Z-manual.sqlite3").json == {"error": "Not found."}


@pytest.mark.xdist_group("postgres")
def test_with_a_shared_folder_every_host_lists_the_backup_as_here_and_serves_it(two_hosts, tmp_path):
    shared = tmp_path / "shared-backups"
    a, b = two_hosts("host-a", shared), two_hosts("host-b", shared)
    name = make_backup(a)["file"]
    for app in (a, b):
        listed = app.test_client().get(API).json["backups"]
        assert [(entry["file"], entry["here"]) for entry in listed] == [(name, True)]
    download = b.test_client().get(f"{API}/{name}")
    assert download.status_code == 200
    assert download.data == (shared / name).read_bytes()


@pytest.mark.xdist_group("postgres")
def test_a_file_copied_in_by_hand_is_listed_on_its_host_only(two_hosts):
    a, b = two_hosts("host-a"), two_hosts("host-b")
    name = make_backup(a)["file"]
    copied = "backup-20260101T000000.000000Z-manual.sqlite3"
    folder_b = Path(b.config["BACKUPS_DIR"])
    folder_b.mkdir(parents=True, exist_ok=True)
    (folder_b / copied).write_bytes((Path(a.config["BACKUPS_DIR"]) / name).read_bytes())

    on_b = b.test_client().get(API).json["backups"]
    assert [(entry["file"], entry["here"], entry["host"]) for entry in on_b] == [
        (name, False, "host-a"),
        (copied, True, None),
    ]
    assert [entry["file"] for entry in a.test_client().get(API).json["backups"]] == [name]


@pytest.mark.xdist_group("postgres")
def test_a_backup_deleted_through_the_app_or_pruned_leaves_every_hosts_list(two_hosts):
    a, b = two_hosts("host-a"), two_hosts("host-b")
    deleted = make_backup(a)["file"]
    assert a.test_client().delete(f"{API}/{deleted}").status_code == 200
    assert b.test_client().get(API).json["backups"] == []

    a.config["BACKUP_KEEP_LAST"] = 1
    db = a.extensions["db"]
    made = []
    for _ in range(2):  # two automatic backups: retention keeps the newest only
        run, lock = claim_task(a.config, db, BACKUP_TASK, "scheduled")
        outcome = complete_task(a.config, db, run, lock)
        assert outcome.error is None, outcome.error
        made.append(outcome.result["file"])
    assert [entry["file"] for entry in b.test_client().get(API).json["backups"]] == [made[-1]]


def test_on_one_host_the_list_is_the_folder_as_before(make_app):
    # A SQLite state database serves one host: an entry naming another host (say, the host
    # name changed) is not listed unless its file is in the folder.
    app = make_app(HOST_NAME="now")
    db = app.extensions["db"]
    catalogue.record_backup(
        db, "backup-20260101T000000.000000Z-manual.sqlite3", "manual", 10, "ab" * 32, utcnow(), "before"
    )
    assert app.test_client().get(API).json["backups"] == []
    name = make_backup(app)["file"]
    listed = app.test_client().get(API).json["backups"]
    assert [(entry["file"], entry["here"], entry["host"]) for entry in listed] == [(name, True, "now")]


def test_an_old_state_database_gains_the_backup_host_column(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:  # backup_record as the previous version created it
        conn.execute(
            "CREATE TABLE backup_record (name VARCHAR(255) PRIMARY KEY, kind VARCHAR(16), size BIGINT,"
            " sha256 VARCHAR(64), created_at DATETIME, verified_at DATETIME, damaged TEXT)"
        )
        conn.execute(
            "INSERT INTO backup_record (name, kind, size, sha256, created_at)"
            " VALUES ('backup-20260101T000000.000000Z-manual.sqlite3', 'manual', 10, '', '2026-01-01 00:00:00.000000')"
        )
    db = Database(f"sqlite:///{path}", path)
    db.create_tables()
    assert "host" in {column["name"] for column in inspect(db.engine).get_columns("backup_record")}
    assert catalogue.host_holding(db, tmp_path, "backup-20260101T000000.000000Z-manual.sqlite3", "here") is None
    db.dispose()


@pytest.mark.xdist_group("postgres")
def test_healthz_warns_when_backups_live_only_in_one_hosts_folder_without_an_off_site_target(two_hosts):
    a, b = two_hosts("host-a"), two_hosts("host-b")
    make_backup(a)
    warnings = b.test_client().get("/healthz").json["warnings"]
    assert any(text.startswith("Backups made on host-a are not in this host's BACKUPS_DIR") for text in warnings)
    # An enabled off-site target keeps a copy elsewhere: no warning then.
    target = {
        "name": "remote",
        "endpoint": "http://127.0.0.1:9000",
        "bucket": "backups",
        "access_key": "AKIAIOSFODNN7EXAMPLE",
        "secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "recipient": "age1qwzeq24g0m5d2rgsv592qzlklszf9wkzmhrxvcde7dkmul9r4swsxxqh7c",
    }
    assert b.test_client().post("/api/v1/settings/offsite", json=target).status_code == 201
    warnings = b.test_client().get("/healthz").json["warnings"]
    assert not any("BACKUPS_DIR" in text for text in warnings)
