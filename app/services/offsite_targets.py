"""Off-site targets: S3-compatible buckets that sealed copies of every backup go to.

The checks here are the only ones: the form (pages), the JSON API and the CLI call them,
and so does every connection (an endpoint is checked again when it is used, since a
name may resolve elsewhere later). Secrets (secret key, passphrase) never leave this
module unmasked except towards the S3 client and the sealing code.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import func, select

from app.db import Database
from app.models import OffsiteCopy, OffsiteTarget, utcnow
from app.services.notification_settings import owner_only

log = logging.getLogger(__name__)

MAX_TARGETS = 20
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,63}\Z")
REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\Z")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()/-]{0,255}\Z")
KEY_TEXT = re.compile(r"^[\x21-\x7e]{1,256}\Z")  # printable ASCII, no spaces
MIN_PASSPHRASE = 12
MAX_PASSPHRASE = 1024
MAX_KEEP_LAST = 1000
ENCRYPTIONS = {"age": "To an age public key (recommended)", "passphrase": "With a passphrase"}
ADDRESSING = {"path": "Path style (host/bucket/key)", "virtual": "Virtual host (bucket.host/key)"}
# Addresses a settings form must never make the server call: link-local (cloud metadata
# services live at 169.254.169.254 and fd00:ec2::254), unspecified, multicast, broadcast.
# Loopback and private networks stay allowed: self-hosters run MinIO or Garage there.
FORBIDDEN_NETWORKS = tuple(
    ipaddress.ip_network(text)
    for text in (
        "169.254.0.0/16",
        "fe80::/10",
        "fd00:ec2::254/128",
        "100.100.100.200/32",  # Alibaba Cloud's metadata service
        "0.0.0.0/8",
        "::/128",
        "224.0.0.0/4",
        "ff00::/8",
        "255.255.255.255/32",
    )
)


class TargetError(ValueError):
    """A field of a target is wrong: ``field`` names it, the message says why, in plain words."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TargetSettings:
    """A checked target, as the user asked for it (secrets included)."""

    name: str
    endpoint: str
    region: str
    bucket: str
    prefix: str
    addressing: str
    access_key: str
    secret_key: str
    encryption: str
    recipient: str | None
    passphrase: str | None
    keep_last: int | None
    enabled: bool


def check_endpoint(text: str, resolve: bool = True) -> str:
    """An http(s) URL with a host, no credentials, query or fragment; never a link-local address.

    ``resolve``: also look the name up and refuse it if any address it has is forbidden.
    """
    text = (text or "").strip()
    if not text:
        raise TargetError("endpoint", "Enter the endpoint URL, e.g. https://s3.eu-central-1.amazonaws.com.")
    if len(text) > 2048:
        raise TargetError("endpoint", "The endpoint URL is too long (at most 2048 characters).")
    if "://" not in text:
        raise TargetError("endpoint", f"Start the endpoint with http:// or https:// (got “{text[:80]}”).")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise TargetError("endpoint", "The endpoint is not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise TargetError("endpoint", f"Only http:// and https:// endpoints are allowed, not {parts.scheme}://.")
    if not parts.hostname:
        raise TargetError("endpoint", "The endpoint URL has no host name.")
    if parts.username or parts.password:
        raise TargetError("endpoint", "Put the keys in their own fields, not in the endpoint URL.")
    if parts.query or parts.fragment:
        raise TargetError("endpoint", "The endpoint URL must not have a query (?) or fragment (#).")
    if any(char.isspace() for char in text):
        raise TargetError("endpoint", "The endpoint URL must not contain spaces.")
    host = parts.hostname.rstrip(".")
    if not host:
        raise TargetError("endpoint", "The endpoint URL has no host name.")
    _refuse_forbidden(host, [host] if _is_ip(host) else (resolve_host(host, port) if resolve else []))
    return text.rstrip("/")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve_host(host: str, port: int | None) -> list[str]:
    """Every address ``host`` resolves to (none when it does not resolve: connecting will say so)."""
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({info[4][0] for info in infos})


def _refuse_forbidden(host: str, addresses: list[str]) -> None:
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if any(address in network for network in FORBIDDEN_NETWORKS if network.version == address.version):
            where = host if host == text else f"{host} ({text})"
            raise TargetError(
                "endpoint",
                f"The endpoint {where} is a link-local, metadata or unspecified address; "
                "the server will not connect there.",
            )


def check_virtual_host(endpoint: str, bucket: str) -> str:
    """Virtual-host addressing connects to ``<bucket>.<host>``: a dotted bucket could make that
    any name (``a.169.254.169.254``), so it is refused, and the name is checked like the endpoint."""
    if "." in bucket:
        raise TargetError("bucket", "With virtual-host addressing the bucket name must not contain dots.")
    parts = urlsplit(endpoint)
    if _is_ip(parts.hostname.rstrip(".")):
        raise TargetError("addressing", "Virtual-host addressing needs a host name, not an IP address: use path style.")
    host = f"{bucket}.{parts.hostname}"
    _refuse_forbidden(host, resolve_host(host, parts.port))
    return bucket


def same_place(db: Database, endpoint: str, bucket: str, prefix: str, except_id: int | None = None):
    """Another target writing to the same bucket and prefix on the same endpoint, if any."""
    for target in list_targets(db):
        if target.id == except_id:
            continue
        if (_place(target.endpoint), target.bucket, target.prefix) == (_place(endpoint), bucket, prefix):
            return target
    return None


def _place(endpoint: str) -> tuple[str, str, int | None]:
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.hostname or "").rstrip(".").lower(), parts.path.rstrip("/"), port


def check_connection_host(url: str) -> None:
    """Before each request: the host it goes to (endpoint or ``<bucket>.<endpoint>``) must
    resolve, and to no forbidden address. Names are looked up again at connect time by
    urllib3, so a name rebinding between the two lookups is not caught (README, Security)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    addresses = [host] if _is_ip(host) else resolve_host(host, parts.port)
    if not addresses:
        raise TargetError("endpoint", f"The name {host} does not resolve to any address.")
    _refuse_forbidden(host, addresses)


def check_bucket(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise TargetError("bucket", "Enter the bucket name.")
    if len(text) > 63 or not BUCKET.match(text) or ".." in text or _is_ip(text):
        raise TargetError(
            "bucket",
            "A bucket name has 3 to 63 lower-case letters, digits, dots and hyphens, starts and ends with a "
            "letter or digit, and has no “..”.",
        )
    return text


def check_prefix(text: str) -> str:
    """A folder inside the bucket: no leading slash, no ``..`` or empty segments; ends with ``/``."""
    text = (text or "").strip()
    if not text:
        return ""
    if len(text) > 255 or not PREFIX.match(text):
        raise TargetError("prefix", "The prefix may have letters, digits and ! _ . * ' ( ) / - (at most 255).")
    segments = text.strip("/").split("/")
    if text.startswith("/") or any(segment in ("", ".", "..") for segment in segments):
        raise TargetError("prefix", "The prefix must not start with “/” or contain empty, “.” or “..” parts.")
    return "/".join(segments) + "/"


def check_region(text: str) -> str:
    text = (text or "").strip() or "us-east-1"
    if not REGION.match(text):
        raise TargetError("region", "A region is lower-case letters, digits and hyphens, e.g. eu-central-1.")
    return text


def check_name(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise TargetError("name", "Give the target a name, e.g. “Backblaze B2”.")
    if not NAME.match(text):
        raise TargetError("name", "A name has at most 64 letters, digits, spaces and . _ ( ) -.")
    return text


def check_key(field: str, text: str, label: str) -> str:
    text = (text or "").strip()
    if not text:
        raise TargetError(field, f"Enter the {label}.")
    if not KEY_TEXT.match(text):
        raise TargetError(field, f"The {label} is 1 to 256 printable characters without spaces.")
    return text


def check_passphrase(text: str) -> str:
    if len(text or "") < MIN_PASSPHRASE:
        raise TargetError("passphrase", f"Use a passphrase of at least {MIN_PASSPHRASE} characters.")
    if len(text) > MAX_PASSPHRASE:
        raise TargetError("passphrase", f"The passphrase is too long (at most {MAX_PASSPHRASE} characters).")
    return text


def check_keep_last(value) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise TargetError("keep_last", "Keep last is a whole number of copies.") from None
    if not 1 <= number <= MAX_KEEP_LAST:
        raise TargetError("keep_last", f"Keep last is from 1 to {MAX_KEEP_LAST} copies.")
    return number


# -- storage ----------------------------------------------------------------------------------------


def list_targets(db: Database) -> list[OffsiteTarget]:
    with db.session() as session:
        return list(session.scalars(select(OffsiteTarget).order_by(OffsiteTarget.id)))


def enabled_targets(db: Database) -> list[OffsiteTarget]:
    return [target for target in list_targets(db) if target.enabled]


def get_target(db: Database, target_id: int) -> OffsiteTarget | None:
    if not 0 < target_id < 2**63:  # beyond SQLite's integers: no such target
        return None
    with db.session() as session:
        return session.get(OffsiteTarget, target_id)


def name_taken(db: Database, name: str, except_id: int | None = None) -> bool:
    with db.session() as session:
        query = select(OffsiteTarget.id).where(func.lower(OffsiteTarget.name) == name.lower())
        if except_id is not None:
            query = query.where(OffsiteTarget.id != except_id)
        return session.scalar(query) is not None


def save_target(db: Database, settings: TargetSettings, target_id: int | None = None) -> OffsiteTarget:
    """Create (``target_id`` None) or replace a target with checked settings."""
    with db.writer() as session:
        if target_id is None:
            if session.scalar(select(func.count()).select_from(OffsiteTarget)) >= MAX_TARGETS:
                raise TargetError("name", f"At most {MAX_TARGETS} targets.")
            target = OffsiteTarget(created_at=utcnow())
            session.add(target)
        else:
            target = session.get(OffsiteTarget, target_id)
            if target is None:
                raise LookupError(target_id)
            if (target.endpoint, target.bucket, target.prefix) != (settings.endpoint, settings.bucket, settings.prefix):
                # Another place: the copies catalogued for the old one are not there.
                session.query(OffsiteCopy).filter(OffsiteCopy.target_id == target_id).delete()
                target.last_result = target.last_message = target.last_result_at = target.last_upload_at = None
        for field in TargetSettings.__dataclass_fields__:
            setattr(target, field, getattr(settings, field))
        target.updated_at = utcnow()
    if db.path is not None:  # PostgreSQL: its own access rules protect the secrets
        owner_only(db.path)
    log.info("off-site target %r saved (%s, bucket %s)", settings.name, settings.endpoint, settings.bucket)
    return target


def set_enabled(db: Database, target_id: int, enabled: bool) -> OffsiteTarget | None:
    with db.writer() as session:
        target = session.get(OffsiteTarget, target_id)
        if target is not None:
            target.enabled = enabled
            target.updated_at = utcnow()
    return target


def delete_target(db: Database, target_id: int) -> OffsiteTarget | None:
    """Forget a target and its catalogue (the remote copies stay where they are)."""
    with db.writer() as session:
        target = session.get(OffsiteTarget, target_id)
        if target is not None:
            session.query(OffsiteCopy).filter(OffsiteCopy.target_id == target_id).delete()
            session.delete(target)
    return target


def record_result(db: Database, target_id: int, ok: bool, message: str, uploaded: bool = False) -> None:
    """What the last upload or connection test of a target found (shown beside it)."""
    with db.writer() as session:
        target = session.get(OffsiteTarget, target_id)
        if target is None:
            return
        now = utcnow()
        target.last_result = "ok" if ok else "failed"
        target.last_result_at = now
        target.last_message = message
        if uploaded:
            target.last_upload_at = now


# -- what pages and answers may show ------------------------------------------------------------------


def mask_access_key(key: str) -> str:
    """Enough of an access key to recognise it: its first 4 and last 2 characters."""
    if len(key) <= 8:
        return "•" * len(key)
    return f"{key[:4]}…{key[-2:]}"


def public_view(target: OffsiteTarget, copies: int | None = None, for_json: bool = True) -> dict:
    """A target as answers and pages show it: no secret key, no passphrase, the access key masked.

    ``for_json``: times as ISO 8601 text (pages get datetimes, for their filters)."""

    def when(moment):
        return moment.isoformat() if for_json and moment is not None else moment

    return {
        "id": target.id,
        "name": target.name,
        "endpoint": target.endpoint,
        "region": target.region,
        "bucket": target.bucket,
        "prefix": target.prefix,
        "addressing": target.addressing,
        "access_key": mask_access_key(target.access_key),
        "secret_key": "set",
        "encryption": target.encryption,
        "recipient": target.recipient if target.encryption == "age" else None,
        "passphrase": "set" if target.encryption == "passphrase" else None,
        "keep_last": target.keep_last,
        "enabled": target.enabled,
        "last_result": target.last_result,
        "last_result_at": when(target.last_result_at),
        "last_message": target.last_message,
        "last_upload_at": when(target.last_upload_at),
        "copies": copies,
    }


def copies_of(db: Database, target_id: int) -> list[OffsiteCopy]:
    """The objects this app wrote to a target, newest first."""
    with db.session() as session:
        query = select(OffsiteCopy).where(OffsiteCopy.target_id == target_id)
        return list(session.scalars(query.order_by(OffsiteCopy.uploaded_at.desc(), OffsiteCopy.id.desc())))


def copy_counts(db: Database) -> dict[int, int]:
    with db.session() as session:
        rows = session.execute(select(OffsiteCopy.target_id, func.count()).group_by(OffsiteCopy.target_id)).all()
    return dict(rows)
