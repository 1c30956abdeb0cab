"""The state database's tables: what the user chose (ScheduleConfig), what happened (JobRun),
who leads (SchedulerState, LeaderLease), what each backup file is (BackupRecord), one-time facts (StateMeta).

None of them ever lives in the data database: that one is backed up and restored, and a
restore must neither rewind the schedule nor bring rows the scheduler would trust.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """Store aware datetimes as naive UTC (SQLite has no zones) and give them back aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ScheduleConfig(Base):
    """The schedule a user chose for one task; the source of truth the leader reconciles from."""

    __tablename__ = "schedule_config"

    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16), default="disabled")
    time: Mapped[str | None] = mapped_column(String(5))
    weekdays: Mapped[str | None] = mapped_column(String(32))  # "mon,thu"
    cron: Mapped[str | None] = mapped_column(String(200))
    every_hours: Mapped[int | None] = mapped_column(Integer)
    # Bumped on every change; the leader stores the version it applied, so it reconciles
    # only when they differ (re-adding a job on every start would reset interval timing).
    version: Mapped[int] = mapped_column(Integer, default=1)
    applied_version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Partial-index conditions, spelled for both engines (a WHERE clause SQLite and PostgreSQL share).
HAS_FIRE_TIME = text("scheduled_for IS NOT NULL")
IS_RUNNING = text("status = 'running'")


class JobRun(Base):
    """One run of a task, written by the run itself so every process sees it.

    Two unique indexes make the database the arbiter between hosts: one row per task and
    fire time (the claim of a scheduled run: whoever inserts it runs it, the other does
    nothing), and at most one running run per task (single flight).
    """

    __tablename__ = "job_run"
    __table_args__ = (
        Index(
            "uq_job_run_fire_time",
            "task",
            "scheduled_for",
            unique=True,
            sqlite_where=HAS_FIRE_TIME,
            postgresql_where=HAS_FIRE_TIME,
        ),
        Index("uq_job_run_running", "task", unique=True, sqlite_where=IS_RUNNING, postgresql_where=IS_RUNNING),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(64), index=True)
    trigger: Mapped[str] = mapped_column(String(16))  # scheduled | manual | catch-up | restore
    status: Mapped[str] = mapped_column(String(16), index=True)  # running | success | failed | interrupted | missed
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pid: Mapped[int | None] = mapped_column(Integer)  # the process doing the run, for liveness
    host: Mapped[str | None] = mapped_column(String(255))  # where that pid lives (the pid check is same-host only)
    # Renewed while the run lives when several hosts share the state database; a running run
    # whose lease has passed is closed as interrupted by whoever notices.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    phase: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[int | None] = mapped_column(Integer)  # percent of the copy
    error: Mapped[str | None] = mapped_column(Text)
    file: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    # What else a run wants to say when it ends (a restore names its safety backup here).
    detail: Mapped[str | None] = mapped_column(Text)

    @property
    def duration_seconds(self) -> float | None:
        """Elapsed seconds, or None while running."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class SchedulerState(Base):
    """The leader's heartbeat: one row, rewritten every few seconds by whichever process leads."""

    __tablename__ = "scheduler_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    leader_pid: Mapped[int] = mapped_column(Integer)
    leader_host: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LeaderLease(Base):
    """The scheduler leader's lease when several hosts share the state database (one row per name).

    The holder renews ``lease_until`` (database time) every tick; anyone may take a lease
    that has passed, bumping ``epoch``. A holder that fails to renew steps down.
    """

    __tablename__ = "leader_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))  # host:pid:random, unique per process and term
    epoch: Mapped[int] = mapped_column(BigInteger, default=1)  # bumped at every change of holder
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BackupRecord(Base):
    """The catalogue: what we know of one backup file (its folder stays the truth of what exists)."""

    __tablename__ = "backup_record"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why the last verification found the file unusable (None while it is fine).
    damaged: Mapped[str | None] = mapped_column(Text)
    # HOST_NAME of the host whose BACKUPS_DIR received the file (None: not recorded, e.g. made
    # before the column existed): hosts without a shared folder list it as "on host <host>".
    host: Mapped[str | None] = mapped_column(String(255))


class StateMeta(Base):
    """One-time facts about the state database (e.g. that the tables were moved out of the data)."""

    __tablename__ = "state_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ScheduleNotice(Base):
    """A one-time message about a stored schedule, shown with its status until the schedule is saved again."""

    __tablename__ = "schedule_notice"

    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    message: Mapped[str] = mapped_column(Text)
    runs_before: Mapped[str] = mapped_column(Text)  # ISO 8601 UTC times, space-separated
    runs_after: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def before(self) -> list[datetime]:
        """The next runs under the old semantics, when the notice was written."""
        return [datetime.fromisoformat(text) for text in self.runs_before.split()]

    @property
    def after(self) -> list[datetime]:
        """The next runs under the corrected semantics, when the notice was written."""
        return [datetime.fromisoformat(text) for text in self.runs_after.split()]


class RetentionSetting(Base):
    """How many automatic backups of a task to keep, when chosen on the Settings page."""

    __tablename__ = "retention_setting"

    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    keep_last: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotificationSettings(Base):
    """Where notifications go and which events send one (one row; the URLs hold secrets)."""

    __tablename__ = "notification_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    urls: Mapped[str] = mapped_column(Text, default="")  # Apprise URLs, one per line
    events: Mapped[str] = mapped_column(Text, default="")  # event ids, comma-separated
    ping_url: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotificationState(Base):
    """What was last told about one subject (a task, its restores, an off-site target).

    Notifications go out on a change of state and as reminders, never once per run or per
    poll: the process that changes this row (in one write transaction) is the one that sends.
    """

    __tablename__ = "notification_state"

    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="ok")  # ok | failing | stale
    event: Mapped[str | None] = mapped_column(String(32))  # the event that made it bad
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_run_id: Mapped[int | None] = mapped_column(Integer)


class NotificationSend(Base):
    """One send to one notification URL or to the ping URL, and how it went."""

    __tablename__ = "notification_send"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    target_key: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the real URL
    target: Mapped[str] = mapped_column(Text)  # the masked URL (Apprise's privacy form)
    event: Mapped[str] = mapped_column(String(32))
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    elapsed_ms: Mapped[int | None] = mapped_column(Integer)


class OffsiteTarget(Base):
    """Where off-site copies go: one S3-compatible bucket and the key they are sealed to.

    ``secret_key`` and ``passphrase`` are secrets: never shown, logged or answered (the
    state file is owner-only). The ``last_*`` columns are what the last upload or
    connection test found, shown beside the target.
    """

    __tablename__ = "offsite_target"
    # Named unique indexes (not constraints): both engines then report them alike.
    __table_args__ = (Index("uq_offsite_target_name", "name", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(Text)
    region: Mapped[str] = mapped_column(String(64), default="us-east-1")
    bucket: Mapped[str] = mapped_column(String(63))
    prefix: Mapped[str] = mapped_column(String(255), default="")
    addressing: Mapped[str] = mapped_column(String(8), default="path")  # path | virtual
    access_key: Mapped[str] = mapped_column(Text)
    secret_key: Mapped[str] = mapped_column(Text)
    encryption: Mapped[str] = mapped_column(String(16), default="age")  # age | passphrase
    recipient: Mapped[str | None] = mapped_column(Text)  # age1... public key
    passphrase: Mapped[str | None] = mapped_column(Text)
    keep_last: Mapped[int | None] = mapped_column(Integer)  # None: BACKUP_KEEP_LAST
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_result: Mapped[str | None] = mapped_column(String(16))  # ok | failed
    last_result_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_message: Mapped[str | None] = mapped_column(Text)  # what the last upload or test said
    last_upload_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the last verified upload


class OffsiteCopy(Base):
    """One object this app wrote to a target: retention deletes only these, never anything else."""

    __tablename__ = "offsite_copy"
    __table_args__ = (Index("uq_offsite_copy_target_key", "target_id", "key", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(Integer, index=True)
    key: Mapped[str] = mapped_column(Text)
    backup: Mapped[str] = mapped_column(String(255))  # the local backup's name
    plain_size: Mapped[int] = mapped_column(BigInteger)
    plain_sha256: Mapped[str] = mapped_column(String(64))
    sealed_size: Mapped[int] = mapped_column(BigInteger)
    sealed_sha256: Mapped[str] = mapped_column(String(64))
    encryption: Mapped[str] = mapped_column(String(16))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    run_id: Mapped[int | None] = mapped_column(Integer)
