"""The flask CLI: backups and schedules from a shell, JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path

from app.services.backups import backup_lock, list_backups
from app.services.schedules import Schedule, load_schedule, save_schedule


def test_backup_run_makes_a_verified_manual_backup_and_prints_it_as_json(app, runner):
    result = runner.invoke(args=["backup", "run", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    backups = list_backups(Path(app.config["BACKUPS_DIR"]))
    assert [b.name for b in backups] == [printed["file"]]
    assert printed["kind"] == "manual" and printed["size"] == backups[0].size and len(printed["sha256"]) == 64


def test_backup_run_refuses_while_another_backup_runs(app, runner):
    with backup_lock(Path(app.config["DATABASE_PATH"])) as lock:
        assert lock.try_acquire()
        result = runner.invoke(args=["backup", "run"])
    assert result.exit_code == 1
    assert "A backup is already running." in result.output
    assert list_backups(Path(app.config["BACKUPS_DIR"])) == []


def test_backup_run_reports_a_folder_problem_and_exits_non_zero(make_app, tmp_path):
    (tmp_path / "afile").write_text("x")
    app = make_app(BACKUPS_DIR=str(tmp_path / "afile" / "backups"))
    result = app.test_cli_runner().invoke(args=["backup", "run"])
    assert result.exit_code == 1
    assert "Backup failed" in result.output and "afile" in result.output


def test_backup_list_json_lists_files_newest_first(runner):
    runner.invoke(args=["backup", "run"])
    runner.invoke(args=["backup", "run"])
    listed = json.loads(runner.invoke(args=["backup", "list", "--json"]).output)["backups"]
    assert len(listed) == 2
    assert listed[0]["file"] > listed[1]["file"]
    assert all(item["created_at"].endswith(("+01:00", "+02:00")) for item in listed)


def test_scheduler_set_saves_a_validated_schedule(db, runner):
    result = runner.invoke(args=["scheduler", "set", "--mode", "weekly", "--time", "03:15", "--weekdays", "thu,mon"])
    assert result.exit_code == 0, result.output
    job = json.loads(result.output)
    assert job["description"] == "Every Monday and Thursday at 03:15"
    assert load_schedule(db, "backup_db")[0] == Schedule("weekly", time="03:15", weekdays=("mon", "thu"))


def test_scheduler_set_refuses_bad_input_and_changes_nothing(db, runner):
    save_schedule(db, "backup_db", Schedule("daily", time="02:30"))
    result = runner.invoke(args=["scheduler", "set", "--mode", "cron", "--cron", "61 * * * *"])
    assert result.exit_code == 2
    assert "cron: Invalid minute field '61'" in result.output
    missing = runner.invoke(args=["scheduler", "set", "--mode", "interval"])
    assert missing.exit_code == 2 and "every_hours" in missing.output
    assert load_schedule(db, "backup_db")[0] == Schedule("daily", time="02:30")


def test_scheduler_status_json_has_schedule_next_run_health_and_history(runner):
    runner.invoke(args=["scheduler", "set", "--mode", "daily", "--time", "04:00"])
    runner.invoke(args=["backup", "run"])
    status = json.loads(runner.invoke(args=["scheduler", "status", "--json"]).output)
    job = status["jobs"][0]
    assert job["schedule"] == {"mode": "daily", "time": "04:00"}
    assert "T04:00:00+0" in job["next_run_at"]
    assert status["scheduler"]["running"] is False  # no server, so no leader heartbeat
    assert [run["status"] for run in status["history"]] == ["success"]
    assert status["sqlite_version"]


def test_scheduler_status_text_says_when_the_scheduler_is_not_running(runner):
    output = runner.invoke(args=["scheduler", "status"]).output
    assert "Scheduler: not running" in output
    assert "backup_db: No automatic backups." in output
