"""The Schedule block: one section per registered task, and one status poll for all of them.

Routes are keyed by task id (``/settings/schedule/<task>/...``). The poll carries the
newest run the page knew and the runs it saw running (``?after=&watch=``); when one of
them has finished, the answer adds its toast and tells the lists to refresh, so each run
is announced once, by the server.
"""

from __future__ import annotations

from flask import abort, current_app, render_template, request

from app.extensions import get_db
from app.forms.schedule import MODE_FIELDS, ScheduleForm
from app.services.registry import TASKS, Task
from app.services.runner import TaskBusy, start_task_in_background
from app.services.schedules import describe, save_schedule
from app.services.status import announcement, poll_state, task_status
from app.settings.pages import (
    PAGE_NEEDS,
    base_context,
    bp,
    existing_files,
    form_preview,
    page_context,
    respond,
    run_toast_order,
    task_view,
)
from app.web import is_htmx

MAX_WATCHED = 50


def _task(task_id: str) -> Task:
    task = TASKS.get(task_id)
    if task is None:
        abort(404)
    return task


def _scheduling_on() -> None:
    if not current_app.config["SCHEDULER_ENABLED"]:
        abort(404)


def _section_answer(partial: str, task: Task, **view_overrides):
    """htmx: one region of a task's section; plain browser: the whole page."""
    if not is_htmx():
        forms = {task.id: view_overrides["form"]} if "form" in view_overrides else {}
        return render_template("settings/index.html", **page_context(PAGE_NEEDS, task_forms=forms))
    view = {**task_view(task, needs=()), **view_overrides}
    return render_template(partial, view=view, existing_files=existing_files(), **base_context())


@bp.get("/schedule/<task_id>/fields")
def schedule_fields(task_id: str):
    """The fields of the chosen strategy, keeping what the user typed (strategy switch)."""
    task = _task(task_id)
    form = ScheduleForm.for_task(task.id, request.args)
    if form.mode.data not in MODE_FIELDS:
        form.mode.data = "disabled"
    return _section_answer("settings/_schedule_fields.html", task, form=form, preview=form_preview(form))


@bp.get("/schedule/<task_id>/preview")
def schedule_preview(task_id: str):
    """The schedule help as you type: plain-English text and the next five runs, or the error."""
    task = _task(task_id)
    form = ScheduleForm.for_task(task.id, request.args)
    view = {"task": task, "form": form, "preview": form_preview(form)}
    return render_template("settings/_schedule_preview.html", view=view, **base_context())


@bp.post("/schedule/<task_id>")
def save_schedule_form(task_id: str):
    """ "Save schedule": validate with the form; on error re-render with the input kept."""
    _scheduling_on()
    task = _task(task_id)
    form = ScheduleForm.for_task(task.id, request.form)
    source = f"schedule-form-{task.id}"
    if request.form.get("action") == "choose":
        # Without JavaScript, "Show fields for this strategy" re-renders; nothing is saved.
        return render_template("settings/index.html", **page_context(PAGE_NEEDS, task_forms={task.id: form}))
    if not form.validate():
        message = ("error", f"The {task.title} schedule was not saved: correct the fields marked in the form.")
        view = {**task_view(task, needs=()), "form": form, "preview": form_preview(form)}
        return respond(
            "settings/_schedule_form.html", 422, message, source=source, view=view, task_forms={task.id: form}
        )
    schedule = form.schedule()
    save_schedule(get_db(), task.id, schedule)
    message = ("success", f"{task.title} schedule saved: {describe(schedule).rstrip('.')}.")
    return respond(
        "settings/_schedule_form.html", 200, message, "schedule-changed", source=source, view=task_view(task, ("form",))
    )


@bp.get("/schedule/<task_id>/history")
def schedule_history(task_id: str):
    """One task's run history."""
    task = _task(task_id)
    return _section_answer("settings/_schedule_history.html", task, history=task_view(task, ("history",))["history"])


@bp.post("/schedule/<task_id>/run")
def run_task(task_id: str):
    """ "Run ... now": start a run in the background and answer at once."""
    _scheduling_on()
    task = _task(task_id)
    source = f"run-{task.id}"
    try:
        run = start_task_in_background(current_app.config, get_db(), task.id)
    except TaskBusy as busy:
        return respond("settings/_schedule_status.html", 409, ("error", str(busy)), source=source, view=_status(task))
    message = ("info", f"{task.noun.capitalize()} started (run #{run.id}).")
    order = run_toast_order(run.id, finished=False)
    return respond(
        "settings/_schedule_status.html", 202, message, "run-started", source=source, order=order, view=_status(task)
    )


def _status(task: Task) -> dict:
    return {"task": task, "status": task_status(current_app.config, get_db(), task.id)}


@bp.get("/schedule/status")
def schedule_status():
    """The one poll of the Schedule block: every task's status, and the runs that finished."""
    if not is_htmx():
        return render_template("settings/index.html", **page_context(PAGE_NEEDS))
    db = get_db()
    after = request.args.get("after", type=int)  # absent: a page that knows no run yet
    watched = {int(part) for part in request.args.get("watch", "").split(",")[:MAX_WATCHED] if part.isdecimal()}
    finished, cursor, running = poll_state(db, after, watched)
    views = [_status(task) for task in TASKS.values()]
    toasts = [
        (f"run-{run.task}", announcement(TASKS[run.task], run), run_toast_order(run.id, finished=True))
        for run in finished
        if run.task in TASKS
    ]
    body = render_template(
        "settings/_schedule_poll.html",
        views=views,
        poll={"after": cursor, "watch": running},
        any_running=any(view["status"].running for view in views),
        toasts=toasts,
        **base_context(),
    )
    response = current_app.response_class(body)
    if finished:
        response.headers["HX-Trigger"] = "runs-finished"
    return response
