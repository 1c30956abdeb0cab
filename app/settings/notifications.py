"""The "Notifications" block: save URLs, events and the ping URL; send a test; see each URL's last send."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for

from app.extensions import get_db
from app.forms.notifications import NotificationsForm
from app.services.notification_settings import load_config, public_view, save_config
from app.services.notifications import send_test
from app.settings.pages import PAGE_NEEDS, bp, page_context
from app.web import is_htmx

PARTIAL = "settings/_notifications.html"


def notifications_block(form: NotificationsForm | None = None, results=None) -> dict:
    """What the block shows: the form (secrets masked), each URL's last send, the last test's results."""
    db = get_db()
    config = load_config(db)
    return {
        "form": form or NotificationsForm.from_config(config),
        "view": public_view(db, config),
        "test_results": results,
    }


def _answer(block: dict, status: int = 200, toast: tuple[str, str] | None = None):
    """htmx: the block and a toast; plain browser: flash and redirect, or the page with the errors."""
    if is_htmx():
        body = render_template(PARTIAL, notify=block) + render_template("_oob_toast.html", toast=toast)
        return current_app.response_class(body, status=status)
    if status >= 400 or block["test_results"] is not None:
        return render_template("settings/index.html", notify=block, toast=toast, **page_context(PAGE_NEEDS)), status
    if toast:
        flash(toast[1], toast[0])
    return redirect(url_for("settings.index", _anchor="notifications-block"))


@bp.get("/notifications")
def notifications():
    """The block alone (htmx) or the page."""
    if is_htmx():
        return render_template(PARTIAL, notify=notifications_block())
    return redirect(url_for("settings.index", _anchor="notifications-block"))


@bp.post("/notifications")
def save_notifications():
    """ "Save notifications": each URL checked by Apprise; on error nothing is saved and the input is kept."""
    db = get_db()
    form = NotificationsForm(request.form, stored=load_config(db))
    if not form.validate():
        toast = ("error", "The notification settings were not saved: correct the fields marked below.")
        return _answer(notifications_block(form), 422, toast)
    config = save_config(db, form.parsed_urls, form.events.data or [], form.parsed_ping_url)
    toast = ("success", f"Notification settings saved: {len(config.urls)} URL(s).")
    return _answer(notifications_block(), 200, toast)


@bp.post("/notifications/test")
def test_notifications():
    """ "Send test notification": one message to every saved URL; one result per URL."""
    db = get_db()
    if not load_config(db).urls:
        return _answer(notifications_block(results=[]), 422, ("error", "Save at least one notification URL first."))
    results = send_test(current_app.config, db)
    failed = sum(not result.ok for result in results)
    toast = (
        ("success", f"Test notification sent to {len(results)} URL(s).")
        if not failed
        else ("error", f"Test notification failed for {failed} of {len(results)} URL(s); see the results.")
    )
    return _answer(notifications_block(results=results), 200, toast)
