"""axe-core audit of the Settings page in each of its states: zero violations of any impact.

The app sends ``Content-Security-Policy: script-src 'self'``; ``add_script_tag(path=...)``
inlines axe's source, which that policy blocks. These tests alone open their browser
context with ``bypass_csp=True``; every other test runs under the app's real policy.
Each audit's rule ids (passes, violations; incomplete with their elements) are written to
``e2e/artifacts/axe/<state>.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from app import create_app
from app.services.runner import claim_task, complete_task
from e2e.support import (
    alerts,
    backup_section,
    choose_strategy,
    history_region,
    make_backup,
    open_settings,
    set_schedule,
    status_region,
    status_value,
    toasts,
)
from tests.support.server import GunicornServer

pytestmark = pytest.mark.browser_context_args(bypass_csp=True)

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
# Rule id -> why it is off. Empty: every rule axe runs by default is checked.
DISABLED_RULES: dict[str, str] = {}


def audit(page: Page, state: str, pytestconfig) -> None:
    """Run axe on the whole page as it is now; fail on any violation."""
    page.add_script_tag(path=str(AXE))
    results = page.evaluate(
        "(rules) => axe.run(document, { rules })",
        {rule: {"enabled": False} for rule in DISABLED_RULES},
    )
    folder = pytestconfig.rootpath / pytestconfig.getoption("--output") / "axe"
    folder.mkdir(parents=True, exist_ok=True)
    summary = {kind: sorted(rule["id"] for rule in results[kind]) for kind in ("passes", "violations")}
    # "Needs review": axe could not decide; kept with the elements concerned, for a person to check.
    summary["incomplete"] = {rule["id"]: [node["target"] for node in rule["nodes"]] for rule in results["incomplete"]}
    (folder / f"{state}.json").write_text(json.dumps(summary, indent=2) + "\n")
    problems = [
        f"{rule['id']} ({rule['impact']}): {rule['help']}\n"
        + "\n".join(f"    {node['target']}: {node['failureSummary']}" for node in rule["nodes"])
        for rule in results["violations"]
    ]
    assert not problems, f"axe found {len(problems)} violation(s) in state {state!r}:\n" + "\n".join(problems)
    assert len(summary["passes"]) > 20, "axe checked suspiciously few rules"


def test_initial_page_has_no_violations(settings_page, pytestconfig):
    expect(status_value(settings_page, "Scheduler")).to_have_text("Running")
    audit(settings_page, "initial", pytestconfig)


@pytest.fixture(scope="module")
def form_server(tmp_path_factory):
    """One app for the audits that only change the unsaved form (saves a server start each)."""
    server = GunicornServer(tmp_path_factory.mktemp("form-audits") / "instance", workers=2).start()
    yield server
    server.stop()


@pytest.fixture
def form_page(form_server, page):
    """The Settings page of ``form_server``, its schedule reset to "Disabled" first."""
    set_schedule(form_server, mode="disabled")
    return open_settings(page, form_server)


# One worker runs every test of the shared ``form_server`` (xdist), so it starts once.
@pytest.mark.xdist_group("a11y-form-server")
@pytest.mark.parametrize("strategy", ["Disabled", "Daily", "Weekly", "Cron expression", "Every N hours"])
def test_each_strategy_has_no_violations(form_page, strategy, pytestconfig):
    page = form_page
    if strategy == "Disabled":
        choose_strategy(page, "Daily")  # so that choosing "Disabled" is a change
    choose_strategy(page, strategy)
    if strategy == "Cron expression":
        backup_section(page).get_by_label("Cron expression").press_sequentially("30 2 * * 1-5")
        expect(page.locator("#schedule-preview-backup_db").get_by_role("listitem")).to_have_count(5)
    audit(page, f"strategy-{strategy.lower().replace(' ', '-')}", pytestconfig)


@pytest.mark.xdist_group("a11y-form-server")
@pytest.mark.parametrize("strategy", ["Weekly", "Cron expression"])
def test_validation_errors_have_no_violations(form_page, strategy, pytestconfig):
    page = form_page
    choose_strategy(page, strategy)
    if strategy == "Weekly":
        backup_section(page).get_by_label("Time of day").fill("")  # and no weekday: two errors
    else:
        backup_section(page).get_by_label("Cron expression").fill("61 * * * *")
    backup_section(page).get_by_role("button", name="Save schedule").click()
    expect(alerts(page)).to_contain_text("The Database backup schedule was not saved")
    expect(page.locator(".error-summary li")).to_have_count(2 if strategy == "Weekly" else 1)
    audit(page, f"errors-{strategy.lower().replace(' ', '-')}", pytestconfig)


@pytest.fixture
def backup_in_progress(live_server):
    """A backup begun by another process (as ``flask backup run`` does), paused mid-way.

    The app's own ``claim_task`` takes the backup lock and records a running run for this
    process; ``complete_task`` then finishes it for real.
    """
    app = create_app(
        {
            "INSTANCE_PATH": str(live_server.instance),
            "SECRET_KEY": "test-secret",
            "SCHEDULER_TIMEZONE": "Europe/Berlin",
            "TESTING": True,
        }
    )
    run, lock = claim_task(app.config, app.extensions["db"], "backup_db", "manual")
    yield run
    outcome = complete_task(app.config, app.extensions["db"], run, lock)
    assert outcome.error is None, outcome.error


def test_backup_running_has_no_violations(live_server, backup_in_progress, page, pytestconfig):
    set_schedule(live_server, mode="daily", time="02:30")
    open_settings(page, live_server)
    status = status_region(page)
    expect(status.get_by_text("Running since")).to_be_visible()
    expect(status.get_by_role("progressbar")).to_be_visible()
    expect(page.get_by_role("button", name="Run backup now")).to_have_attribute("aria-disabled", "true")
    audit(page, "backup-running", pytestconfig)


def test_success_toast_has_no_violations(settings_page, pytestconfig):
    page = settings_page
    page.get_by_role("button", name="Backup DB now").click()
    expect(toasts(page)).to_contain_text("Backup finished")
    expect(history_region(page).get_by_text("Success")).to_be_visible()
    audit(page, "success-toast", pytestconfig)
    expect(toasts(page)).to_contain_text("Backup finished")  # still shown: the audit saw it


def test_failed_backup_has_no_violations(start_server, page, tmp_path, pytestconfig):
    (tmp_path / "afile").write_text("not a folder\n")
    server = start_server(BACKUPS_DIR=str(tmp_path / "afile" / "backups"))
    open_settings(page, server)
    page.get_by_role("button", name="Run backup now").click()
    expect(status_value(page, "Last result")).to_contain_text("Failed", timeout=10_000)
    expect(alerts(page)).to_contain_text("Backup failed")
    audit(page, "backup-failed", pytestconfig)


def test_phone_width_has_no_violations(live_server, page, pytestconfig):
    make_backup(live_server)
    page.set_viewport_size({"width": 375, "height": 800})
    open_settings(page, live_server)
    expect(history_region(page).get_by_text("Success")).to_be_visible()
    audit(page, "phone-375", pytestconfig)
    choose_strategy(page, "Cron expression")
    backup_section(page).get_by_label("Cron expression").fill("61 * * * *")
    backup_section(page).get_by_role("button", name="Save schedule").click()
    expect(backup_section(page).locator(".error-summary")).to_be_visible()
    audit(page, "phone-375-errors", pytestconfig)


def test_an_error_then_a_success_has_no_violations(settings_page, pytestconfig):
    page = settings_page
    choose_strategy(page, "Weekly")
    backup_section(page).get_by_role("button", name="Save schedule").click()
    expect(alerts(page)).to_contain_text("The Database backup schedule was not saved")
    backup_section(page).get_by_role("checkbox", name="Monday").check()
    backup_section(page).get_by_role("button", name="Save schedule").click()
    expect(toasts(page)).to_contain_text("Database backup schedule saved")
    audit(page, "error-then-success", pytestconfig)


def test_two_task_sections_with_errors_in_one_have_no_violations(settings_page, pytestconfig):
    page = settings_page
    backup = backup_section(page)
    verification = backup_section(page, "Backup verification")
    expect(verification.get_by_label("Strategy")).to_have_value("disabled")
    choose_strategy(page, "Cron expression")
    backup.get_by_label("Cron expression").fill("61 * * * *")
    backup.get_by_role("button", name="Save schedule").click()
    expect(backup.locator(".error-summary")).to_be_visible()
    expect(verification.locator(".error-summary")).to_have_count(0)
    expect(verification.locator("[aria-invalid]")).to_have_count(0)
    audit(page, "two-tasks-one-with-errors", pytestconfig)


def test_off_site_targets_a_failing_one_a_listing_and_form_errors_have_no_violations(
    offsite_server, s3, page, pytestconfig
):
    from e2e.test_offsite_steps import add_target_through_the_form, fill_target, offsite_block, target_card

    open_settings(page, offsite_server)
    add_target_through_the_form(page, s3)
    add_target_through_the_form(page, s3, name="Broken", secret="not-the-secret-key-of-that-server", prefix="broken/")
    page.get_by_role("button", name="Run backup now").click()
    expect(alerts(page)).to_contain_text("Backup finished with warnings", timeout=15_000)
    fill_target(page, s3, "Third", endpoint="ftp://example.org", prefix="third/")
    offsite_block(page).get_by_role("button", name="Add target").click()
    expect(offsite_block(page).locator(".error-summary")).to_be_visible()
    target_card(page, "Local S3").get_by_role("link", name="Show remote copies").click()
    expect(page.get_by_role("region", name="Remote copies on Local S3")).to_be_visible()
    audit(page, "offsite-targets", pytestconfig)
    page.get_by_role("region", name="Remote copies on Local S3").get_by_role("link").first.click()
    expect(page.get_by_role("heading", name="Restore from Local S3")).to_be_visible()
    page.get_by_role("button", name="Download and check").click()
    expect(page.locator(".error-summary")).to_be_visible()
    audit(page, "offsite-fetch-with-error", pytestconfig)
