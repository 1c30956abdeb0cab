"""Off-site copies: every successful backup sealed (zstd, then age) and uploaded to each target.

An upload is a phase of the backup run: the local backup is already verified and kept
whatever happens here. Each target is independent; a target that fails makes the run
"success with warnings" (status ``warning``), sends the off-site notification, and leaves
the local copy alone. An upload is verified by reading the object back with a HEAD: its
size, and the sha256 of the plaintext and of the sealed bytes in its metadata.

Servers differ (boto3 #4392): checksums are computed only when an operation requires
them, so MinIO, Garage, SeaweedFS, rclone and Ceph accept our requests; some servers
give user metadata keys back capitalised, so they are read case-insensitively.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from sqlalchemy import delete, select

from app.db import Database
from app.models import OffsiteCopy, OffsiteTarget, utcnow
from app.services import notifications, offsite_targets
from app.services.backups import BackupError, prepare_folder
from app.services.errors import TaskError
from app.services.retention import keep_last
from app.services.sealing import SEALED_SUFFIX, SealError, seal, unseal
from app.services.uploads import accept_upload, discard_upload, open_staged_upload

log = logging.getLogger(__name__)

# Sealed files on their way out (an upload, under the backup lock) or in (a fetch, outside it).
UPLOAD_TEMP, FETCH_TEMP, TEMP_SUFFIX = ".offsite-up-", ".offsite-down-", ".tmp"
WRITTEN_BY = "settings-scheduler"
MB = 1024 * 1024


def transfer_config(config: Mapping) -> TransferConfig:
    """Multipart above one part's size (``OFFSITE_PART_MB``, 64 MiB: a 1 GiB backup is 16 parts,
    far under S3's 10 000), four parts in flight: under the memory target (README, "Performance")."""
    part = config["OFFSITE_PART_MB"] * MB
    return TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=4)


REMOTE_KEY = re.compile(r"(backup-\d{8}T\d{6}\.\d{6}Z-[a-z-]+\.sqlite3)" + re.escape(SEALED_SUFFIX) + r"\Z")
MAX_LISTED = 1000


class OffsiteError(TaskError):
    """An off-site operation failed; the message says what, in plain words, without secrets."""


@dataclass(frozen=True)
class UploadOutcome:
    """What one target's upload of one backup came to."""

    target: str
    ok: bool
    message: str
    key: str | None = None
    sealed_size: int | None = None


@dataclass(frozen=True)
class RemoteCopy:
    """An object under a target's prefix that looks like one of our sealed copies."""

    key: str
    backup: str
    size: int
    modified: datetime
    ours: bool  # in this app's catalogue (retention may delete it)
    plain_size: int | None = None
    plain_sha256: str | None = None


# -- the client -------------------------------------------------------------------------------------


def client_for(config: Mapping, target: OffsiteTarget):
    """A boto3 S3 client for ``target``; the endpoint is checked again (names can move)."""
    offsite_targets.check_endpoint(target.endpoint)
    timeout = config["OFFSITE_TIMEOUT_SECONDS"]
    settings = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": target.addressing},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=min(timeout, 10),
        read_timeout=timeout,
        signature_version="s3v4",
        user_agent_extra="settings-scheduler",
    )
    session = boto3.session.Session()
    client = session.client(
        "s3",
        endpoint_url=target.endpoint,
        region_name=target.region,
        aws_access_key_id=target.access_key,
        aws_secret_access_key=target.secret_key,
        config=settings,
    )
    # Every request, retries and virtual-host names included: the host it goes to is checked.
    client.meta.events.register("before-send.s3", _check_request_host)
    return client


def _check_request_host(request, **_kwargs) -> None:
    offsite_targets.check_connection_host(request.url)


def explain(exc: BaseException, target: OffsiteTarget, timeout: float) -> str:
    """A failure in plain words: what the server said, never a secret or a traceback."""
    if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, (ClientError, BotoCoreError)):
        exc = exc.__context__  # boto3's transfer wraps the server's answer
    if isinstance(exc, offsite_targets.TargetError):
        return str(exc)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "")
        message = str(error.get("Message") or "").strip()
        if code in ("NoSuchBucket", "404") and "bucket" in (message.lower() or "nosuchbucket"):
            return f"The bucket {target.bucket} does not exist on {target.endpoint}."
        if code == "NoSuchBucket":
            return f"The bucket {target.bucket} does not exist on {target.endpoint}."
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthorizationHeaderMalformed"):
            return f"The server refused the access key or secret key ({code})."
        if code in ("AccessDenied", "403"):
            return f"Access denied to bucket {target.bucket}: check the key's permissions ({code})."
        if code in ("EntityTooLarge", "QuotaExceeded", "XMinioStorageFull") or "space" in message.lower():
            return f"The server has no room for the copy ({code}: {message or 'storage full'})."
        detail = f"{code}: {message}" if message else code
        return f"The server answered with an error ({detail})."
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return f"The server {target.endpoint} did not answer within {timeout:g} s."
    if isinstance(exc, EndpointConnectionError):
        return f"Cannot connect to {target.endpoint}: is the server running and the address right?"
    if isinstance(exc, NoCredentialsError):
        return "The target has no access key."
    if isinstance(exc, BotoCoreError):
        return f"The connection to {target.endpoint} failed: {exc}"
    if isinstance(exc, SealError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"A local file error: {exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}."
    return f"Unexpected error: {exc}"


def _metadata(head: dict) -> dict[str, str]:
    """User metadata, keys lower-cased: some servers answer ``Sha256`` for ``sha256``."""
    return {str(key).lower(): str(value) for key, value in (head.get("Metadata") or {}).items()}


def object_key(target: OffsiteTarget, backup: str) -> str:
    return f"{target.prefix}{backup}{SEALED_SUFFIX}"


# -- connection test --------------------------------------------------------------------------------


def test_connection(config: Mapping, db: Database, target: OffsiteTarget) -> tuple[bool, str]:
    """ "Test connection": write, read back and delete a small object under the prefix."""
    started = time.monotonic()
    key = f"{target.prefix}.connection-test-{secrets.token_hex(6)}"
    body = b"settings-scheduler connection test\n"
    try:
        client = client_for(config, target)
        client.put_object(Bucket=target.bucket, Key=key, Body=body, Metadata={"written-by": WRITTEN_BY})
        head = client.head_object(Bucket=target.bucket, Key=key)
        if head.get("ContentLength") != len(body):
            raise OffsiteError(
                "The test object read back with the wrong size: the server does not keep what it is sent."
            )
        cannot_delete = _try_delete(client, target, key)
    except Exception as exc:  # every failure is an answer to show, not a crash
        message = explain(exc, target, config["OFFSITE_TIMEOUT_SECONDS"])
        offsite_targets.record_result(db, target.id, False, f"Test failed: {message}")
        log.info("off-site target %r: connection test failed: %s", target.name, message)
        return False, message
    elapsed = round((time.monotonic() - started) * 1000)
    if cannot_delete:
        message = (
            f"Connected in {elapsed} ms: wrote and read back a test object in bucket {target.bucket}, but this key "
            f"may not delete ({cannot_delete}): copies will be uploaded, old ones not removed by “Keep last”."
        )
    else:
        message = f"Connected in {elapsed} ms: wrote, read back and deleted a test object in bucket {target.bucket}."
    offsite_targets.record_result(db, target.id, True, message)
    return True, message


def _try_delete(client, target: OffsiteTarget, key: str) -> str | None:
    """Delete ``key``; the error code when the key may not delete (append-only keys are fine)."""
    try:
        client.delete_object(Bucket=target.bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code") or "")
        if code in ("AccessDenied", "403"):
            return code
        raise
    return None


# -- upload -----------------------------------------------------------------------------------------


def copy_to_targets(
    config: Mapping, db: Database, backup_path: Path, sha256: str, run_id: int | None, report
) -> list[UploadOutcome]:
    """Upload a verified local backup to every enabled target; one outcome per target."""
    targets = offsite_targets.enabled_targets(db)
    watch = CancelWatch(backup_path.parent)
    outcomes = []
    for number, target in enumerate(targets, start=1):
        if watch.tripped:
            outcomes.append(UploadOutcome(target.name, False, CANCELLED))
            continue
        suffix = "" if len(targets) == 1 else f" {number}/{len(targets)}"

        def relay(phase: str, percent: int | None, suffix=suffix) -> None:
            watch.check()
            report(phase + suffix, percent)

        outcomes.append(upload_backup(config, db, target, backup_path, sha256, run_id, relay, watch))
    return outcomes


# -- a restore goes first ---------------------------------------------------------------------------

CANCEL_FLAG = ".offsite-cancel"
CANCELLED = "cancelled: a restore was asked for and goes first"


class OffsiteCancelled(Exception):
    """A restore asked the running off-site phase to stop (it holds the backup lock)."""


def request_cancel(backups_dir: Path) -> None:
    """Ask the off-site phase running in any process to stop: a restore is waiting for the lock."""
    prepare_folder(backups_dir)
    flag = backups_dir / CANCEL_FLAG
    flag.touch()
    os.utime(flag)  # touch() keeps an existing file's time on some systems


def clear_cancel(backups_dir: Path) -> None:
    """The restore has the lock (or gave up): later uploads must not stop for it."""
    (backups_dir / CANCEL_FLAG).unlink(missing_ok=True)


class CancelWatch:
    """Whether a restore asked the off-site phase that started at ``since`` to stop.

    Looked at from the phase's progress reports (every chunk sent, every few MB sealed), at
    most every 0.2 s. A server that hangs sends no progress: the request then waits for the
    read timeout, and the restore is refused as busy after its wait (``RESTORE_WAIT_SECONDS``).
    """

    def __init__(self, backups_dir: Path) -> None:
        self.flag = backups_dir / CANCEL_FLAG
        self.since = time.time()
        self.tripped = False
        self._looked = 0.0

    def check(self) -> None:
        now = time.monotonic()
        if not self.tripped and now - self._looked >= 0.2:
            self._looked = now
            with contextlib.suppress(FileNotFoundError):
                self.tripped = self.flag.stat().st_mtime >= self.since
        if self.tripped:
            raise OffsiteCancelled(CANCELLED)


def upload_backup(
    config: Mapping,
    db: Database,
    target: OffsiteTarget,
    backup_path: Path,
    sha256: str,
    run_id: int | None,
    report: Callable[[str, int | None], None] = lambda phase, percent: None,
    watch: CancelWatch | None = None,
) -> UploadOutcome:
    """Seal ``backup_path`` for ``target``, upload it, read it back, apply the target's retention."""
    backups_dir = backup_path.parent
    temp = backups_dir / f"{UPLOAD_TEMP}{secrets.token_hex(8)}{TEMP_SUFFIX}"
    key = object_key(target, backup_path.name)
    plain_size = backup_path.stat().st_size
    try:
        with _owner_only_file(temp) as out:
            report("sealing", 0)
            sealed = seal(
                backup_path,
                out,
                recipient=target.recipient if target.encryption == "age" else None,
                passphrase=target.passphrase if target.encryption == "passphrase" else None,
                work_factor=config["OFFSITE_SCRYPT_WORK_FACTOR"],
                progress=lambda done: report("sealing", min(100, 100 * done // max(plain_size, 1))),
            )
            out.flush()
        if sealed.plain_sha256 != sha256:
            raise OffsiteError("The local backup changed since it was verified; it was not uploaded.")
        report("uploading", 0)
        client = client_for(config, target)
        _abort_abandoned_parts(client, target)
        metadata = {
            "written-by": WRITTEN_BY,
            "backup": backup_path.name,
            "plain-sha256": sealed.plain_sha256,
            "plain-size": str(sealed.plain_size),
            "sealed-sha256": sealed.sealed_sha256,
            "encryption": "age-x25519" if target.encryption == "age" else "age-scrypt",
        }
        sent = _Sent(sealed.sealed_size, lambda percent: report("uploading", percent))
        client.upload_file(
            str(temp),
            target.bucket,
            key,
            ExtraArgs={"Metadata": metadata, "ContentType": "application/octet-stream"},
            Config=transfer_config(config),
            Callback=sent,
        )
        head = client.head_object(Bucket=target.bucket, Key=key)
        _check_read_back(head, sealed.sealed_size, sealed.plain_sha256, sealed.sealed_sha256)
        _catalogue(db, target, key, backup_path.name, sealed, run_id)
    except Exception as exc:
        if isinstance(exc, TaskError) and not isinstance(exc, OffsiteError):
            raise  # the run itself must stop (its lease lapsed): not this target's failure
        if watch is not None and watch.tripped:  # however the libraries wrapped our exception
            log.info("off-site upload of %s to %r cancelled for a restore", backup_path.name, target.name)
            return UploadOutcome(target.name, False, CANCELLED, key)
        message = explain(exc, target, config["OFFSITE_TIMEOUT_SECONDS"])
        log.warning("off-site upload of %s to %r failed: %s", backup_path.name, target.name, message)
        offsite_targets.record_result(db, target.id, False, f"Upload of {backup_path.name} failed: {message}")
        notifications.offsite_upload_failed(config, db, target.name, message)
        return UploadOutcome(target.name, False, message, key)
    finally:
        temp.unlink(missing_ok=True)
    ratio = f"{100 * sealed.sealed_size / max(plain_size, 1):.0f} %"
    message = f"{backup_path.name} uploaded and verified ({_size(sealed.sealed_size)}, {ratio} of the backup)"
    try:
        # The copy is safe whatever happens here: a key that may not delete (an append-only
        # key against ransomware) only means more copies are kept than asked.
        pruned = _apply_retention(config, db, client, target)
    except Exception as exc:
        reason = explain(exc, target, config["OFFSITE_TIMEOUT_SECONDS"])
        log.warning("off-site target %r: old copies not removed: %s", target.name, reason)
        message += f"; older copies could not be removed ({reason})"
    else:
        if pruned:
            message += f"; {len(pruned)} older cop{'y' if len(pruned) == 1 else 'ies'} removed"
    offsite_targets.record_result(db, target.id, True, message + ".", uploaded=True)
    notifications.offsite_upload_succeeded(config, db, target.name)
    return UploadOutcome(target.name, True, message, key, sealed.sealed_size)


def _abort_abandoned_parts(client, target: OffsiteTarget) -> None:
    """Abort multipart uploads of our copies that a killed run left (providers bill their parts).

    Runs under the backup lock, so no upload of this install is going on; best effort (some
    servers do not list multipart uploads)."""
    try:
        answer = client.list_multipart_uploads(Bucket=target.bucket, Prefix=target.prefix)
        for upload in answer.get("Uploads", []):
            if REMOTE_KEY.fullmatch(upload["Key"][len(target.prefix) :]):
                client.abort_multipart_upload(Bucket=target.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                log.info("off-site target %r: aborted an abandoned multipart upload of %s", target.name, upload["Key"])
    except (ClientError, BotoCoreError) as exc:
        log.debug("off-site target %r: abandoned multipart uploads not listed: %s", target.name, exc)


@contextlib.contextmanager
def _owner_only_file(path: Path):
    """A new file only its owner can read (sealed copies are secret until they are sent)."""
    prepare_folder(path.parent)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        yield handle


class _Sent:
    """boto3's progress callback (called from its threads): bytes sent -> percent."""

    def __init__(self, total: int, progress: Callable[[int], None]) -> None:
        self.total, self.done, self.progress = max(total, 1), 0, progress
        self.lock = threading.Lock()

    def __call__(self, amount: int) -> None:
        with self.lock:
            self.done += amount
            percent = min(100, 100 * self.done // self.total)
        self.progress(percent)


def _check_read_back(head: dict, size: int, plain_sha256: str, sealed_sha256: str) -> None:
    metadata = _metadata(head)
    problems = []
    if head.get("ContentLength") != size:
        problems.append(f"size {head.get('ContentLength')} instead of {size}")
    if metadata.get("sealed-sha256") != sealed_sha256:
        problems.append("sha256 of the sealed copy differs")
    if metadata.get("plain-sha256") != plain_sha256:
        problems.append("sha256 of the backup differs")
    if problems:
        raise OffsiteError(f"The uploaded copy read back wrong ({'; '.join(problems)}).")


def _catalogue(db: Database, target: OffsiteTarget, key: str, backup: str, sealed, run_id: int | None) -> None:
    with db.writer() as session:
        session.execute(delete(OffsiteCopy).where(OffsiteCopy.target_id == target.id, OffsiteCopy.key == key))
        session.add(
            OffsiteCopy(
                target_id=target.id,
                key=key,
                backup=backup,
                plain_size=sealed.plain_size,
                plain_sha256=sealed.plain_sha256,
                sealed_size=sealed.sealed_size,
                sealed_sha256=sealed.sealed_sha256,
                encryption=target.encryption,
                uploaded_at=utcnow(),
                run_id=run_id,
            )
        )


def _apply_retention(config: Mapping, db: Database, client, target: OffsiteTarget) -> list[str]:
    """Delete this app's oldest copies on ``target`` beyond its "keep last" (never anything else)."""
    keep = target.keep_last or keep_last(config, db)
    ours = [copy for copy in offsite_targets.copies_of(db, target.id) if copy.key.startswith(target.prefix)]
    pruned = []
    for copy in ours[keep:]:
        client.delete_object(Bucket=target.bucket, Key=copy.key)
        with db.writer() as session:
            session.execute(delete(OffsiteCopy).where(OffsiteCopy.id == copy.id))
        pruned.append(copy.key)
    if pruned:
        log.info("off-site target %r: removed %d old cop(ies)", target.name, len(pruned))
    return pruned


def _size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def summary(outcomes: list[UploadOutcome]) -> str:
    """One sentence for the run's detail: what each target came to."""
    parts = [f"{outcome.target}: {'verified' if outcome.ok else 'failed: ' + outcome.message}" for outcome in outcomes]
    return "Off-site copies: " + "; ".join(parts) + "."


# -- listing and restoring --------------------------------------------------------------------------


def list_remote(config: Mapping, db: Database, target: OffsiteTarget) -> list[RemoteCopy]:
    """Our sealed copies under the target's prefix, newest first (the catalogue marks ours)."""
    client = client_for(config, target)
    catalogued = {copy.key: copy for copy in offsite_targets.copies_of(db, target.id)}
    found = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=target.bucket, Prefix=target.prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            match = REMOTE_KEY.fullmatch(key[len(target.prefix) :])
            if not match:
                continue
            copy = catalogued.get(key)
            found.append(
                RemoteCopy(
                    key=key,
                    backup=match.group(1),
                    size=item["Size"],
                    modified=item["LastModified"],
                    ours=copy is not None,
                    plain_size=copy.plain_size if copy else None,
                    plain_sha256=copy.plain_sha256 if copy else None,
                )
            )
    # Keys are small: list them all, keep the newest (S3 lists in ascending key order).
    return sorted(found, key=lambda copy: copy.backup, reverse=True)[:MAX_LISTED]


def check_remote_key(target: OffsiteTarget, key: str) -> str:
    """A key the user picked must be one of ours-looking objects under the target's prefix."""
    if not key.startswith(target.prefix) or not REMOTE_KEY.fullmatch(key[len(target.prefix) :]):
        raise OffsiteError(f"{key[:200]} is not a sealed backup under this target's prefix.")
    return key


def fetch_copy(
    config: Mapping,
    db: Database,
    target: OffsiteTarget,
    key: str,
    backups_dir: Path,
    identity: str | None = None,
    passphrase: str | None = None,
):
    """Download a remote copy, check it, open it with the key given for this one operation, and
    keep it as an "uploaded" backup (the same checks as an upload); restoring it is the usual
    confirmed step. The identity or passphrase is never stored."""
    check_remote_key(target, key)
    prepare_folder(backups_dir)
    temp = backups_dir / f"{FETCH_TEMP}{secrets.token_hex(8)}{TEMP_SUFFIX}"
    staged = None
    try:
        client = client_for(config, target)
        head = client.head_object(Bucket=target.bucket, Key=key)
        # What was recorded at upload: the catalogue (this install's own), else the object's
        # metadata (a new install recovering from a disaster has no catalogue yet).
        expected = _metadata(head)
        known = catalogued_copy(db, target, key)
        if known is not None:
            expected.update({"sealed-sha256": known.sealed_sha256, "plain-sha256": known.plain_sha256})
        limit = _fetch_limit(config, known)
        size = head.get("ContentLength") or 0
        if size > limit:
            raise OffsiteError(f"The copy is {_size(size)}, more than this app accepts from outside ({_size(limit)}).")
        _check_room(backups_dir, size)
        answer = client.get_object(Bucket=target.bucket, Key=key)
        digest = _download(answer["Body"], temp, limit)
        if expected.get("sealed-sha256") and expected["sealed-sha256"] != digest:
            raise OffsiteError("The downloaded copy differs from what was uploaded (sha256 mismatch).")
        staged, handle = open_staged_upload(backups_dir)
        handle.close()
        with open(temp, "rb") as source:
            plain_sha256, _plain_size = unseal(source, staged, identity=identity, passphrase=passphrase, limit=limit)
        if expected.get("plain-sha256") and expected["plain-sha256"] != plain_sha256:
            raise OffsiteError("The opened copy differs from the backup that was uploaded (sha256 mismatch).")
        return accept_upload(db, backups_dir, staged, config["HOST_NAME"])
    except OffsiteError:
        raise
    except (SealError, BackupError) as exc:  # BackupError: it opened, but is not a usable backup
        raise OffsiteError(str(exc)) from None
    except (ClientError, BotoCoreError, offsite_targets.TargetError, OSError) as exc:
        raise OffsiteError(explain(exc, target, config["OFFSITE_TIMEOUT_SECONDS"])) from None
    finally:
        temp.unlink(missing_ok=True)
        if staged is not None:
            discard_upload(staged)


def catalogued_copy(db: Database, target: OffsiteTarget, key: str) -> OffsiteCopy | None:
    """What this install recorded when it uploaded ``key`` to ``target`` (None: not ours)."""
    with db.session() as session:
        query = select(OffsiteCopy).where(OffsiteCopy.target_id == target.id, OffsiteCopy.key == key)
        return session.scalars(query).first()


def copy_encryption(db: Database, target: OffsiteTarget, key: str) -> str:
    """How a copy is expected to be sealed: as catalogued when it was uploaded, else the
    target's current setting (``age`` or ``passphrase``)."""
    known = catalogued_copy(db, target, key)
    return known.encryption if known is not None else target.encryption


def _fetch_limit(config: Mapping, known: OffsiteCopy | None) -> int:
    """The largest copy a fetch accepts: what this install uploaded, or ``MAX_UPLOAD_MB`` for a
    copy it did not write (anyone who can write to the bucket can seal to a public key)."""
    limit = config["MAX_UPLOAD_MB"] * MB
    return max(limit, known.plain_size, known.sealed_size) if known is not None else limit


def _check_room(folder: Path, sealed_size: int) -> None:
    """Refuse a download the backup folder's disk cannot hold (the copy and its opened form)."""
    free = shutil.disk_usage(folder).free
    if free < 3 * sealed_size + 64 * MB:
        raise OffsiteError(
            f"The backup folder's disk has {_size(free)} free: not enough to download and open "
            f"a {_size(sealed_size)} copy."
        )


def _download(body, path: Path, limit: int) -> str:
    digest = hashlib.sha256()
    written = 0
    with _owner_only_file(path) as out:
        for chunk in iter(lambda: body.read(MB), b""):
            written += len(chunk)
            if written > limit:
                raise OffsiteError("The copy is larger than its listing said; it was not kept.")
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def remove_leftovers(backups_dir: Path) -> list[str]:
    """Sealed files a killed upload left behind (call under the backup lock: no upload runs)."""
    removed = []
    for path in backups_dir.glob(f"{UPLOAD_TEMP}*{TEMP_SUFFIX}"):
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed
