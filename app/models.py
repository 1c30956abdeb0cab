"""Tables: what the user chose (ScheduleConfig), what happened (JobRun), who leads (SchedulerState)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, String, Text, TypeDecorator
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


class JobRun(Base):
    """One run of a task, written by the run itself so every process sees it."""

    __tablename__ = "job_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(64), index=True)
    trigger: Mapped[str] = mapped_column(String(16))  # scheduled | manual | catch-up
    status: Mapped[str] = mapped_column(String(16), index=True)  # running | success | failed | interrupted | missed
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pid: Mapped[int | None] = mapped_column(Integer)  # the process doing the run, for liveness
    phase: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[int | None] = mapped_column(Integer)  # percent of the copy
    error: Mapped[str | None] = mapped_column(Text)
    file: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))

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


class RetentionSetting(Base):
    """How many automatic backups of a task to keep, when chosen on the Settings page."""

    __tablename__ = "retention_setting"

    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    keep_last: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
