"""The registry is real: a third task added with one body and one entry works on every surface.

Nothing but the ``Task`` below is written for it: the Schedule section, its partials,
the JSON API, the CLI, the status poll, the history and the health check all come from
the registry.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.services import runs
from app.services.locks import FileLock
from app.services.registry import TASKS, Task
from tests.settings.html_tree import oob_toast, parse
from tests.support.waiting import wait_for

HX = {"HX-Request": "true"}


def _tidy(ctx) -> dict:
    marker = Path(ctx.config["INSTANCE_PATH"]) / "tidied"
    marker.write_text("tidied")
    ctx.report("tidying", 50)
    return {"detail": "Removed 3 stale files."}


@pytest.fixture
def demo_task(monkeypatch, tmp_path):
    """The one thing a new task needs: a Task in the registry."""
    task = Task(
        id="tidy_up",
        title="Tidy up",
        noun="tidy-up",
        summary="Removes stale temporary files.",
        lock=lambda config: FileLock(tmp_path / "tidy.lock"),
        body=_tidy,
    )
    monkeypatch.setitem(TASKS, task.id, task)
    return task


def wait_finished(db, run_id: int):
    return wait_for(lambda: (run := runs.get_run(db, run_id)).status != "running" and run, 10)


def test_a_registered_task_gets_its_own_section_with_strategy_save_status_run_and_history(app, client, db, demo_task):
    page = parse(client.get("/settings").get_data(as_text=True))
    section = page.by_id("task-tidy_up")
    assert section.find("h3").text == "Tidy up"
    assert section.find("label", for_="tidy_up-mode").text == "Strategy"
    assert section.by_id("run-now-tidy_up").text == "Run tidy-up now"
    assert section.by_id("history-tidy_up") is not None

    saved = client.post("/settings/schedule/tidy_up", data={"mode": "daily", "time": "04:00"}, headers=HX)
    assert saved.status_code == 200
    assert (
        "Tidy up schedule saved: Every day at 04:00." in oob_toast(parse(saved.get_data(as_text=True)), "toasts").text
    )

    after = runs.newest_run_id(db)
    started = client.post("/settings/schedule/tidy_up/run", headers=HX)
    assert started.status_code == 202
    run = wait_finished(db, runs.newest_run_id(db))
    assert (run.task, run.status, run.detail) == ("tidy_up", "success", "Removed 3 stale files.")
    assert (Path(app.config["INSTANCE_PATH"]) / "tidied").read_text() == "tidied"

    poll = parse(client.get(f"/settings/schedule/status?after={after}", headers=HX).get_data(as_text=True))
    assert oob_toast(poll, "toasts").text.startswith("Tidy-up finished: Removed 3 stale files.")
    assert "Removed 3 stale files." in poll.by_id("last-result-tidy_up").text
    history = parse(client.get("/settings/schedule/tidy_up/history", headers=HX).get_data(as_text=True))
    assert "Manual" in history.by_id("history-tidy_up").text


def test_a_registered_task_is_in_the_api_and_the_cli(app, client, runner, demo_task):
    answer = client.post("/api/v1/settings/scheduler/tidy_up", json={"mode": "interval", "every_hours": 6})
    assert answer.status_code == 200 and answer.get_json()["id"] == "tidy_up"
    jobs = {job["id"]: job for job in client.get("/api/v1/settings/scheduler").get_json()["jobs"]}
    assert jobs["tidy_up"]["schedule"] == {"mode": "interval", "every_hours": 6}

    started = client.post("/api/v1/settings/scheduler/tidy_up/run")
    assert started.status_code == 202
    wait_finished(app.extensions["db"], started.get_json()["run"]["id"])

    result = runner.invoke(args=["scheduler", "set", "--task", "tidy_up", "--mode", "daily", "--time", "05:00"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["schedule"] == {"mode": "daily", "time": "05:00"}
    status = runner.invoke(args=["scheduler", "status"])
    assert "tidy_up: Every day at 05:00" in status.output
    assert client.delete("/api/v1/settings/scheduler/tidy_up").get_json()["schedule"] == {"mode": "disabled"}
    assert client.post("/api/v1/settings/scheduler/no_such_task/run").status_code == 404
    refused = runner.invoke(args=["scheduler", "set", "--task", "no_such_task", "--mode", "disabled"])
    assert refused.exit_code != 0 and "no task 'no_such_task'" in refused.output


def test_a_failing_registered_task_is_a_health_reason(app, client, monkeypatch, demo_task, tmp_path):
    from app.services.errors import TaskError

    def fail(ctx):
        raise TaskError("the temp folder is gone")

    monkeypatch.setitem(TASKS, "tidy_up", Task(**{**demo_task.__dict__, "body": fail}))
    run = client.post("/api/v1/settings/scheduler/tidy_up/run").get_json()["run"]
    finished = wait_finished(app.extensions["db"], run["id"])

    assert (finished.status, finished.error) == ("failed", "the temp folder is gone")
    body = client.get("/healthz").get_json()
    assert "The last Tidy up run failed: the temp folder is gone" in body["reasons"]
    assert body["tasks"]["tidy_up"]["last_result"] == "failed"
