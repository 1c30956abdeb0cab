"""Settings read from the environment (and an optional ``.env``), validated at start."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class ConfigError(Exception):
    """A configuration value is missing or not allowed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Validated configuration, one field per environment variable."""

    instance_path: Path
    database_url: str
    database_path: Path | None  # None on PostgreSQL
    state_database_url: str
    state_database_path: Path | None  # None on PostgreSQL
    backups_dir: Path
    secret_key: str
    scheduler_enabled: bool
    scheduler_timezone: str
    misfire_grace_seconds: int
    backup_keep_last: int
    backup_busy_timeout_seconds: float
    restore_busy_timeout_seconds: float = 30.0
    max_upload_mb: int = 4096
    backup_verify_count: int = 3
    admin_password_hash: str | None = None
    api_token: str | None = None
    admin_password_hash_source: str | None = field(default=None, repr=False)
    session_cookie_secure: bool = False
    scheduler_tick_seconds: float = 1.0
    scheduler_follower_retry_seconds: float = 3.0
    scheduler_lease_seconds: float = 10.0
    notify_timeout_seconds: int = 10
    notify_remind_hours: int = 24
    public_url: str | None = None
    offsite_timeout_seconds: int = 60
    offsite_scrypt_work_factor: int = 18
    offsite_part_mb: int = 64
    host_name: str = ""

    @property
    def auth_enabled(self) -> bool:
        """Whether pages and API need a login or a bearer token."""
        return self.admin_password_hash is not None

    def as_flask_config(self) -> dict:
        """The settings as Flask config keys (upper-case names)."""
        return {
            "INSTANCE_PATH": str(self.instance_path),
            "DATABASE_URL": self.database_url,
            "DATABASE_PATH": None if self.database_path is None else str(self.database_path),
            "STATE_DATABASE_URL": self.state_database_url,
            "STATE_DATABASE_PATH": None if self.state_database_path is None else str(self.state_database_path),
            "BACKUPS_DIR": str(self.backups_dir),
            "SECRET_KEY": self.secret_key,
            "SCHEDULER_ENABLED": self.scheduler_enabled,
            "SCHEDULER_TIMEZONE": self.scheduler_timezone,
            "SCHEDULER_MISFIRE_GRACE_SECONDS": self.misfire_grace_seconds,
            "BACKUP_KEEP_LAST": self.backup_keep_last,
            "BACKUP_BUSY_TIMEOUT_SECONDS": self.backup_busy_timeout_seconds,
            "RESTORE_BUSY_TIMEOUT_SECONDS": self.restore_busy_timeout_seconds,
            "MAX_UPLOAD_MB": self.max_upload_mb,
            "BACKUP_VERIFY_COUNT": self.backup_verify_count,
            "ADMIN_PASSWORD_HASH": self.admin_password_hash,
            "API_TOKEN": self.api_token,
            "SESSION_COOKIE_SECURE": self.session_cookie_secure,
            "SCHEDULER_TICK_SECONDS": self.scheduler_tick_seconds,
            "SCHEDULER_FOLLOWER_RETRY_SECONDS": self.scheduler_follower_retry_seconds,
            "SCHEDULER_LEASE_SECONDS": self.scheduler_lease_seconds,
            "NOTIFY_TIMEOUT_SECONDS": self.notify_timeout_seconds,
            "NOTIFY_REMIND_HOURS": self.notify_remind_hours,
            "PUBLIC_URL": self.public_url,
            "OFFSITE_TIMEOUT_SECONDS": self.offsite_timeout_seconds,
            "OFFSITE_SCRYPT_WORK_FACTOR": self.offsite_scrypt_work_factor,
            "OFFSITE_PART_MB": self.offsite_part_mb,
            "HOST_NAME": self.host_name,
            # Changes whenever the password does, so old sessions end with it.
            "ADMIN_PASSWORD_FINGERPRINT": _fingerprint(self.secret_key, self.admin_password_hash_source),
            "AUTH_ENABLED": self.auth_enabled,
        }


def load_settings(env: dict[str, str], default_instance_path: Path) -> Settings:
    """Build and validate :class:`Settings` from ``env``; raise :class:`ConfigError` on a bad value."""
    instance_path = Path(env.get("INSTANCE_PATH") or default_instance_path).resolve()
    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance_path / 'app.db'}"
    database_url, database_path = _database(database_url, "DATABASE_URL", "app.db")
    state_database_url = env.get("STATE_DATABASE_URL") or f"sqlite:///{instance_path / 'state.db'}"
    state_database_url, state_database_path = _database(state_database_url, "STATE_DATABASE_URL", "state.db")
    same_file = database_path is not None and state_database_path == database_path
    if same_file or (database_path is None and make_url(database_url) == make_url(state_database_url)):
        raise ConfigError(
            "STATE_DATABASE_URL must name another file (or database) than DATABASE_URL: the scheduler's state must "
            "survive a restore of the data."
        )
    backups_dir = Path(env.get("BACKUPS_DIR") or instance_path / "backups").resolve()
    tick = _seconds(env, "SCHEDULER_TICK_SECONDS", default=1.0, low=0.05, high=60)
    lease = _seconds(env, "SCHEDULER_LEASE_SECONDS", default=10.0, low=1, high=600)
    if lease < 3 * tick:
        # The leader renews once a tick: a lease shorter than three ticks lapses between
        # renewals, and leadership would flap at every tick.
        raise ConfigError(
            f"SCHEDULER_LEASE_SECONDS ({lease:g}) must be at least three times SCHEDULER_TICK_SECONDS ({tick:g})."
        )
    return Settings(
        instance_path=instance_path,
        database_url=database_url,
        database_path=database_path,
        state_database_url=state_database_url,
        state_database_path=state_database_path,
        backups_dir=backups_dir,
        secret_key=env.get("SECRET_KEY") or _stored_secret_key(instance_path),
        scheduler_enabled=_boolean(env, "SCHEDULER_ENABLED", default=True),
        scheduler_timezone=_timezone(env),
        misfire_grace_seconds=_integer(
            env, "SCHEDULER_MISFIRE_GRACE_SECONDS", default=12 * 3600, low=1, high=7 * 86400
        ),
        backup_keep_last=_integer(env, "BACKUP_KEEP_LAST", default=14, low=1, high=10_000),
        backup_busy_timeout_seconds=float(_integer(env, "BACKUP_BUSY_TIMEOUT_SECONDS", default=30, low=1, high=3600)),
        restore_busy_timeout_seconds=float(_integer(env, "RESTORE_BUSY_TIMEOUT_SECONDS", default=30, low=1, high=3600)),
        max_upload_mb=_integer(env, "MAX_UPLOAD_MB", default=4096, low=1, high=1_048_576),
        backup_verify_count=_integer(env, "BACKUP_VERIFY_COUNT", default=3, low=1, high=10_000),
        admin_password_hash=_password_hash(env),
        admin_password_hash_source=(env.get("ADMIN_PASSWORD") or env.get("ADMIN_PASSWORD_HASH", "")).strip() or None,
        session_cookie_secure=_boolean(env, "SESSION_COOKIE_SECURE", default=False),
        api_token=_api_token(env),
        scheduler_tick_seconds=_seconds(env, "SCHEDULER_TICK_SECONDS", default=1.0, low=0.05, high=60),
        scheduler_follower_retry_seconds=_seconds(
            env, "SCHEDULER_FOLLOWER_RETRY_SECONDS", default=3.0, low=0.05, high=300
        ),
        scheduler_lease_seconds=_seconds(env, "SCHEDULER_LEASE_SECONDS", default=10.0, low=1, high=600),
        notify_timeout_seconds=_integer(env, "NOTIFY_TIMEOUT_SECONDS", default=10, low=1, high=300),
        notify_remind_hours=_integer(env, "NOTIFY_REMIND_HOURS", default=24, low=1, high=24 * 365),
        public_url=_public_url(env),
        offsite_timeout_seconds=_integer(env, "OFFSITE_TIMEOUT_SECONDS", default=60, low=1, high=3600),
        # age's own default (2^18); lower only to make tests fast, never for real copies.
        offsite_scrypt_work_factor=_integer(env, "OFFSITE_SCRYPT_WORK_FACTOR", default=18, low=10, high=22),
        # S3 parts are 5 MiB at least; 10 000 parts of 64 MiB cover a 625 GiB backup.
        offsite_part_mb=_integer(env, "OFFSITE_PART_MB", default=64, low=5, high=5120),
        host_name=_host_name(env),
    )


MIN_PASSWORD_LENGTH = 8
MIN_TOKEN_LENGTH = 20


def _password_hash(env: dict[str, str]) -> str | None:
    """ADMIN_PASSWORD_HASH (werkzeug format) or a hash of ADMIN_PASSWORD; None when neither is set."""
    from werkzeug.security import generate_password_hash

    stored = env.get("ADMIN_PASSWORD_HASH", "").strip()
    plain = env.get("ADMIN_PASSWORD", "")
    if stored and plain:
        raise ConfigError("Set ADMIN_PASSWORD or ADMIN_PASSWORD_HASH, not both.")
    if stored:
        if not stored.startswith(("scrypt:", "pbkdf2:")):
            raise ConfigError(
                "ADMIN_PASSWORD_HASH must be a werkzeug password hash (scrypt:... or pbkdf2:...); make one with: "
                "python -c 'from werkzeug.security import generate_password_hash as g; print(g(input()))'"
            )
        return stored
    if plain:
        if len(plain) < MIN_PASSWORD_LENGTH:
            raise ConfigError(f"ADMIN_PASSWORD must be at least {MIN_PASSWORD_LENGTH} characters long.")
        return generate_password_hash(plain)
    return None


def _fingerprint(secret_key: str, password_source: str | None) -> str | None:
    if password_source is None:
        return None
    return hmac.new(secret_key.encode(), password_source.encode(), hashlib.sha256).hexdigest()[:32]


def _api_token(env: dict[str, str]) -> str | None:
    token = env.get("API_TOKEN", "").strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"API_TOKEN must be at least {MIN_TOKEN_LENGTH} characters long (use a random string).")
    if not (env.get("ADMIN_PASSWORD") or env.get("ADMIN_PASSWORD_HASH")):
        raise ConfigError("API_TOKEN needs ADMIN_PASSWORD or ADMIN_PASSWORD_HASH: without them nothing is protected.")
    return token


def _public_url(env: dict[str, str]) -> str | None:
    """PUBLIC_URL: where people reach the app (for links in notifications); None when unset."""
    raw = env.get("PUBLIC_URL", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"PUBLIC_URL must be an http(s) address such as https://backups.example.org (got {raw!r}).")
    return raw.rstrip("/")


POSTGRES_DRIVER = "postgresql+psycopg"


def _database(url: str, name: str, example: str) -> tuple[str, Path | None]:
    """A database URL: a SQLite file (one host) or PostgreSQL through psycopg 3 (several hosts).

    Returns the URL and the SQLite file, or None for PostgreSQL. A bare ``postgresql://``
    names SQLAlchemy's psycopg2 driver, which this app does not ship: it is refused with
    the spelling to use.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None
    if parsed is not None and parsed.drivername == POSTGRES_DRIVER:
        if not parsed.database:
            raise ConfigError(f"{name} must name a database: {POSTGRES_DRIVER}://user:password@host:5432/database.")
        return url, None
    try:
        return url, _sqlite_path(url, name)
    except ConfigError:
        raise ConfigError(
            f"{name} must be a SQLite file (sqlite:////var/lib/app/{example}) or a PostgreSQL database through "
            f"psycopg 3 ({POSTGRES_DRIVER}://user:password@host:5432/database) (got {_shown(url)!r})."
        ) from None


def _shown(url: str) -> str:
    """A database URL as messages may show it: never its password (start-up errors reach logs)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return re.sub(r"//[^/@]*@", "//***@", url)
    if parsed.password is None and "password" not in parsed.query:
        return url
    query = {key: ("***" if key == "password" else value) for key, value in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)


def _sqlite_path(url: str, name: str) -> Path:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"{name} must be a URL to a SQLite file, e.g. sqlite:////var/lib/app/app.db (got {_shown(url)!r}: {exc})."
        ) from None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        raise ConfigError(
            f"{name} must point to a SQLite file, e.g. sqlite:////var/lib/app/app.db "
            f"(got {_shown(url)!r}); this app keeps its data and its state in SQLite files."
        )
    return Path(parsed.database).resolve()


def _boolean(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    allowed = ", ".join(sorted(TRUE_WORDS | FALSE_WORDS))
    raise ConfigError(f"{name} must be one of {allowed} (got {raw!r}).")


def _integer(env: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number from {low} to {high} (got {raw!r}).") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high} (got {value}).")
    return value


def _seconds(env: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds from {low:g} to {high:g} (got {raw!r}).") from None
    if not low <= value <= high:  # also refuses nan and inf
        raise ConfigError(f"{name} must be a number of seconds from {low:g} to {high:g} (got {raw!r}).")
    return value


def _host_name(env: dict[str, str]) -> str:
    """HOST_NAME, else the machine's host name: which host's backup folder holds a file."""
    import socket

    raw = env.get("HOST_NAME", "").strip() or socket.gethostname()
    if len(raw) > 255:
        raise ConfigError(f"HOST_NAME must be at most 255 characters (got {len(raw)}).")
    return raw


def _timezone(env: dict[str, str]) -> str:
    raw = env.get("SCHEDULER_TIMEZONE", "").strip()
    if not raw:
        from tzlocal import get_localzone_name

        raw = get_localzone_name() or "UTC"
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"SCHEDULER_TIMEZONE must be an IANA time zone name such as Europe/Berlin or UTC (got {raw!r})."
        ) from None
    return raw


def _stored_secret_key(instance_path: Path) -> str:
    """Return the key kept in ``instance/secret_key``, creating it (mode 0600) on first use."""
    key_file = instance_path / "secret_key"
    instance_path.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        # Several gunicorn workers may race here: each writes its own temporary file and
        # link() publishes exactly one of them, complete, under the final name.
        tmp = instance_path / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(tmp, key_file)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = key_file.read_text().strip()
    if not key:
        raise ConfigError(f"SECRET_KEY is unset and {key_file} is empty; delete that file or set SECRET_KEY.")
    return key
