"""The "Off-site copies" block: add, edit, test, enable or disable and delete targets; list a
target's remote copies and bring one back (download, open with the key given for this one
operation, check), ready for the usual confirmed restore."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for

from app.extensions import get_db
from app.forms.offsite import OffsiteTargetForm
from app.models import OffsiteTarget, utcnow
from app.services import offsite, offsite_targets
from app.services.sealing import SealError, check_identity
from app.settings.forms import FetchForm
from app.settings.pages import PAGE_NEEDS, backups_dir, bp, page_context
from app.web import is_htmx

PARTIAL = "settings/_offsite.html"
NEW_PREFIX = "target-"


def offsite_block(form: OffsiteTargetForm | None = None, copies: dict | None = None) -> dict:
    """What the block shows: each target (masked) with its last result, and the "Add target" form."""
    db = get_db()
    counts = offsite_targets.copy_counts(db)
    targets = offsite_targets.list_targets(db)
    return {
        "targets": [
            offsite_targets.public_view(target, counts.get(target.id, 0), for_json=False) for target in targets
        ],
        "form": form or OffsiteTargetForm(prefix=NEW_PREFIX, db=db),
        "copies": copies or {},
    }


def _answer(block: dict, status: int = 200, toast: tuple[str, str] | None = None, source: str | None = None):
    """htmx: the block and a toast; plain browser: flash and redirect, or the page with the errors."""
    if is_htmx():
        body = render_template(PARTIAL, offsite=block)
        body += render_template("_oob_toast.html", toast=toast, toast_source=source)
        return current_app.response_class(body, status=status)
    if status >= 400 or block["copies"]:
        page = render_template("settings/index.html", offsite=block, toast=toast, **page_context(PAGE_NEEDS))
        return page, status
    if toast:
        flash(toast[1], toast[0])
    return redirect(url_for("settings.index", _anchor="offsite-block"))


def _target(target_id: int) -> OffsiteTarget:
    target = offsite_targets.get_target(get_db(), target_id)
    if target is None:
        abort(404)
    return target


@bp.get("/offsite")
def offsite_targets_block():
    """The block alone (htmx) or the page."""
    if is_htmx():
        return render_template(PARTIAL, offsite=offsite_block())
    return redirect(url_for("settings.index", _anchor="offsite-block"))


@bp.get("/offsite/targets")
def offsite_targets_list():
    """The targets alone (htmx, after a run ended), or the page."""
    if is_htmx():
        block = offsite_block()
        return render_template("settings/_offsite_targets.html", targets=block["targets"], copies={})
    return redirect(url_for("settings.index", _anchor="offsite-block"))


@bp.post("/offsite")
def add_offsite_target():
    """ "Add target": every field checked; on error nothing is saved and the input is kept."""
    db = get_db()
    form = OffsiteTargetForm(request.form, prefix=NEW_PREFIX, db=db)
    if not form.validate():
        toast = ("error", "The target was not added: correct the fields marked below.")
        return _answer(offsite_block(form), 422, toast, source="offsite-form")
    try:
        target = offsite_targets.save_target(db, form.settings)
    except offsite_targets.TargetError as exc:
        form.name.errors = [str(exc)]
        return _answer(offsite_block(form), 422, ("error", f"The target was not added: {exc}"), source="offsite-form")
    toast = ("success", f"Target {target.name} added. Use “Test connection” to check it.")
    return _answer(offsite_block(), 200, toast, source="offsite-form")


@bp.get("/offsite/<int:target_id>/edit")
def edit_offsite_target(target_id: int):
    """The edit page: every stored value but the secrets (left empty, they are kept)."""
    target = _target(target_id)
    return render_template(
        "settings/offsite_edit.html", target=target, form=OffsiteTargetForm.for_target(target, get_db())
    )


@bp.post("/offsite/<int:target_id>")
def save_offsite_target(target_id: int):
    """ "Save target" on the edit page."""
    db = get_db()
    target = _target(target_id)
    form = OffsiteTargetForm(request.form, db=db, stored=target)
    if not form.validate():
        page = render_template("settings/offsite_edit.html", target=target, form=form)
        return page, 422
    offsite_targets.save_target(db, form.settings, target.id)
    flash(f"Target {form.settings.name} saved.", "success")
    return redirect(url_for("settings.index", _anchor="offsite-block"))


@bp.post("/offsite/<int:target_id>/test")
def test_offsite_target(target_id: int):
    """ "Test connection": write, read back and delete a small object; the result stays shown."""
    target = _target(target_id)
    ok, message = offsite.test_connection(current_app.config, get_db(), target)
    toast = ("success", f"{target.name}: {message}") if ok else ("error", f"{target.name}: test failed. {message}")
    return _answer(offsite_block(), 200, toast, source=f"offsite-{target.id}")


@bp.post("/offsite/<int:target_id>/enabled")
def toggle_offsite_target(target_id: int):
    """ "Disable" / "Enable": whether backups are uploaded to this target."""
    target = _target(target_id)
    enabled = request.form.get("enabled") == "1"
    offsite_targets.set_enabled(get_db(), target.id, enabled)
    word = "enabled: every backup is uploaded to it" if enabled else "disabled: backups are not uploaded to it"
    return _answer(offsite_block(), 200, ("success", f"Target {target.name} {word}."), source=f"offsite-{target.id}")


@bp.post("/offsite/<int:target_id>/delete")
def delete_offsite_target(target_id: int):
    """ "Delete": forget the target; the copies already uploaded stay in the bucket."""
    target = _target(target_id)
    offsite_targets.delete_target(get_db(), target.id)
    toast = ("success", f"Target {target.name} deleted. The copies already in {target.bucket} were not touched.")
    return _answer(offsite_block(), 200, toast, source=f"offsite-{target.id}")


@bp.get("/offsite/<int:target_id>/copies")
def offsite_copies(target_id: int):
    """ "Show remote copies": what the bucket holds under the target's prefix."""
    target = _target(target_id)
    try:
        listing = {"copies": offsite.list_remote(current_app.config, get_db(), target), "error": None}
    except Exception as exc:  # shown in the listing's place
        listing = {"copies": [], "error": offsite.explain(exc, target, current_app.config["OFFSITE_TIMEOUT_SECONDS"])}
    listing["at"] = utcnow()
    if is_htmx():
        return render_template("settings/_offsite_copies.html", target=target, listing=listing)
    return _answer(offsite_block(copies={target.id: listing}))


@bp.get("/offsite/<int:target_id>/fetch")
def fetch_offsite_copy_page(target_id: int):
    """The page that asks for the key (never stored) before a remote copy is brought back."""
    target, key = _remote_copy(target_id, request.args)
    form = FetchForm(encryption=offsite.copy_encryption(get_db(), target, key))
    form.key.data = key
    return _fetch_page(target, form)


def _remote_copy(target_id: int, values) -> tuple[OffsiteTarget, str]:
    """The target and the object key a fetch names (404 for a key outside the target's prefix)."""
    target = _target(target_id)
    key = values.get("key", "")
    try:
        offsite.check_remote_key(target, key)
    except offsite.OffsiteError:
        abort(404)
    return target, key


def _fetch_page(target: OffsiteTarget, form: FetchForm, status: int = 200):
    return render_template("settings/offsite_fetch.html", target=target, form=form), status


@bp.post("/offsite/<int:target_id>/fetch")
def fetch_offsite_copy(target_id: int):
    """Download, check, open and check again; then the usual confirmation page for the restore."""
    target, key = _remote_copy(target_id, request.form)
    form = FetchForm(request.form, encryption=offsite.copy_encryption(get_db(), target, key))
    if not form.validate():
        return _fetch_page(target, form, 422)
    given = form.given
    try:
        identity = check_identity(given.data) if given is form.identity else None
        result = offsite.fetch_copy(
            current_app.config,
            get_db(),
            target,
            key,
            backups_dir(),
            identity=identity,
            passphrase=given.data if given is form.passphrase else None,
        )
    except (offsite.OffsiteError, SealError) as exc:
        given.errors = [str(exc)]
        return _fetch_page(target, form, 422)
    flash(
        f"{form.key.data.rsplit('/', 1)[-1]} was downloaded from {target.name}, opened and checked: it is kept here "
        f"as {result.name}. Confirm below to restore it.",
        "info",
    )
    return redirect(url_for("settings.confirm_restore", name=result.name))
