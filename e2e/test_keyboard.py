"""The Weekly flow of manual step 7, then "Run backup now", with the keyboard alone.

No clicks, no fill(), no focus(): only page.keyboard. After every htmx swap the focus
must still be somewhere sensible inside the Schedule block, and always visible.
"""

from __future__ import annotations

from playwright.sync_api import Locator, Page, expect

from e2e.support import alerts, backup_section, status_value, toasts, unexpected_console_errors

MAX_PRESSES = 40


def is_focused(locator: Locator) -> bool:
    return locator.evaluate("element => element === document.activeElement")


def assert_focus_in_schedule_block(page: Page) -> None:
    """Focus is on an element (not the body) inside the Schedule block, with a visible outline."""
    state = page.evaluate(
        """() => {
          const e = document.activeElement;
          return {
            tag: e.tagName,
            inBlock: !!e.closest("#schedule-block"),
            outline: getComputedStyle(e).outlineStyle,
            width: parseFloat(getComputedStyle(e).outlineWidth),
          };
        }"""
    )
    assert state["tag"] != "BODY", "focus was lost to the page body"
    assert state["inBlock"], f"focus left the Schedule block: {state}"
    assert state["outline"] != "none" and state["width"] >= 2, f"the focused {state['tag']} shows no focus outline"


def press_until_focused(page: Page, target: Locator, key: str = "Tab") -> None:
    """Press Tab (or Shift+Tab) until ``target`` has the focus, as a keyboard user would."""
    for _ in range(MAX_PRESSES):
        page.keyboard.press(key)
        if is_focused(target):
            return
    raise AssertionError(f"{target} not reached with {MAX_PRESSES} presses of {key}")


def test_weekly_schedule_and_run_now_with_the_keyboard_only(settings_page):
    page = settings_page
    block = backup_section(page)
    strategy = backup_section(page).get_by_label("Strategy")

    press_until_focused(page, strategy)
    assert_focus_in_schedule_block(page)

    # Arrow keys change a closed select at once; each change swaps in new fields.
    for _ in range(3):
        page.keyboard.press("ArrowDown")  # Daily, Weekly, Cron expression
    expect(block.get_by_label("Cron expression")).to_be_visible()
    page.keyboard.press("ArrowUp")  # back to Weekly
    expect(strategy).to_have_value("weekly")
    expect(block.get_by_role("group", name="Weekdays")).to_be_visible()
    expect(block.get_by_label("Cron expression")).to_have_count(0)
    expect(strategy).to_be_focused()
    assert_focus_in_schedule_block(page)

    time_of_day = block.get_by_label("Time of day")
    page.keyboard.press("Tab")
    expect(time_of_day).to_be_focused()
    page.keyboard.press("Control+A")  # a 24-hour text field, "02:00" by default
    page.keyboard.type("03:15")
    expect(time_of_day).to_have_value("03:15")

    # Save before ticking a weekday: the error summary takes the focus.
    save = backup_section(page).get_by_role("button", name="Save schedule")
    press_until_focused(page, save)
    page.keyboard.press("Enter")
    summary = block.get_by_role("alert").filter(has_text="The Database backup schedule was not saved")
    expect(summary).to_be_focused()
    assert_focus_in_schedule_block(page)
    expect(alerts(page)).to_contain_text("The Database backup schedule was not saved")
    expect(time_of_day).to_have_value("03:15")  # kept

    # Its link leads to the weekdays.
    link = summary.get_by_role("link", name="Weekdays: Choose at least one weekday.")
    page.keyboard.press("Tab")
    expect(link).to_be_focused()
    assert_focus_in_schedule_block(page)
    page.keyboard.press("Enter")
    expect(block.get_by_role("group", name="Weekdays")).to_be_focused()
    monday = block.get_by_role("checkbox", name="Monday")
    thursday = block.get_by_role("checkbox", name="Thursday")
    page.keyboard.press("Tab")
    expect(monday).to_be_focused()
    assert_focus_in_schedule_block(page)
    page.keyboard.press("Space")
    press_until_focused(page, thursday)
    page.keyboard.press("Space")
    expect(monday).to_be_checked()
    expect(thursday).to_be_checked()
    press_until_focused(page, monday, key="Shift+Tab")  # back up and check Monday again
    expect(monday).to_be_checked()
    assert_focus_in_schedule_block(page)

    press_until_focused(page, save)
    page.keyboard.press("Enter")
    expect(toasts(page)).to_contain_text("Database backup schedule saved: Every Monday and Thursday at 03:15.")
    expect(status_value(page, "Schedule")).to_have_text("Every Monday and Thursday at 03:15")
    expect(save).to_be_focused()  # the form was swapped; htmx keeps the focus on its button
    assert_focus_in_schedule_block(page)

    run_now = block.get_by_role("button", name="Run backup now")
    press_until_focused(page, run_now)
    assert_focus_in_schedule_block(page)
    page.keyboard.press("Enter")
    expect(toasts(page)).to_contain_text("Backup started")
    expect(status_value(page, "Last result")).to_contain_text("Success", timeout=10_000)
    expect(run_now).to_be_focused()
    assert_focus_in_schedule_block(page)
    assert unexpected_console_errors(page) == []
