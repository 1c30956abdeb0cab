"""``flask offsite``: recovery from a shell, against a real S3 server."""

from __future__ import annotations

from tests.offsite.support import IDENTITY


def test_list_test_copies_fetch_then_restore_from_a_shell(offsite_app, tmp_path):
    created = offsite_app.add_target()
    offsite_app.write_rows(100)
    run = offsite_app.backup().run
    cli = offsite_app.app.test_cli_runner()

    listed = cli.invoke(args=["offsite", "list"])
    assert listed.exit_code == 0 and '"name": "rclone"' in listed.output
    assert offsite_app.s3.secret_key not in listed.output

    tested = cli.invoke(args=["offsite", "test", str(created["id"])])
    assert tested.exit_code == 0 and "wrote, read back and deleted" in tested.output

    copies = cli.invoke(args=["offsite", "copies", str(created["id"])])
    key = f"app/{run.file}.zst.age"
    assert copies.exit_code == 0 and copies.output.startswith(key + "\t")

    missing = cli.invoke(args=["offsite", "fetch", str(created["id"]), key])
    assert missing.exit_code == 2 and "--identity-file" in missing.output

    identity = tmp_path / "key.txt"
    identity.write_text(f"# created: 2026-11-30T10:00:00Z\n{IDENTITY}\n")
    fetched = cli.invoke(args=["offsite", "fetch", str(created["id"]), key, "--identity-file", str(identity)])
    assert fetched.exit_code == 0, fetched.output
    name = fetched.output.strip()
    assert name.endswith("-uploaded.sqlite3")
    assert (offsite_app.backups_dir / name).read_bytes() == (offsite_app.backups_dir / run.file).read_bytes()

    restored = cli.invoke(args=["backup", "restore", name, "--yes"])
    assert restored.exit_code == 0, restored.output


def test_a_target_that_fails_exits_non_zero_with_the_reason(offsite_app):
    created = offsite_app.add_target(bucket="not-there")
    cli = offsite_app.app.test_cli_runner()
    tested = cli.invoke(args=["offsite", "test", str(created["id"])])
    assert tested.exit_code == 1 and "The bucket not-there does not exist" in tested.output
    assert cli.invoke(args=["offsite", "test", "99"]).exit_code == 1
