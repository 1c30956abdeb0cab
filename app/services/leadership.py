"""Who may run the scheduler: a file lock on one host, a lease row when hosts share PostgreSQL.

Leadership only decides who *tries* to fire jobs; it is not what makes a fire time run
once. That is the run row unique on (task, fire time) (``app/services/runs.py``): a
paused or partitioned leader that wakes up after losing its lease loses that insert too.

Why a lease row rather than a session advisory lock: the lock vanishes silently with its
connection (pool recycle, failover, ``pg_terminate_backend``), does not work through
PgBouncer in transaction mode, and a paused holder cannot know it lost it. A lease is an
ordinary row written in short transactions, judged by the database's clock, and its
holder knows by its own monotonic clock when it must stop believing it leads.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import update

from app.db import Database
from app.models import LeaderLease
from app.services.locks import FileLock
from app.services.runs import database_now, this_host

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"


class Leadership(Protocol):
    def try_acquire(self) -> bool: ...

    def renew(self) -> bool: ...

    def release(self) -> None: ...


class FileLeadership:
    """One host: an ``flock`` beside the state database, freed by the kernel when the holder dies."""

    def __init__(self, path: Path) -> None:
        self.lock = FileLock(path)

    def try_acquire(self) -> bool:
        return self.lock.try_acquire()

    def renew(self) -> bool:
        return self.lock.held  # nothing can take a held flock away

    def release(self) -> None:
        self.lock.release()


class LeaseLeadership:
    """Several hosts: a row in ``leader_lease`` renewed every tick, taken over once it has passed.

    The holder believes it leads only until ``seconds`` after the start of its last
    successful renewal (monotonic clock, measured before the database's clock was read,
    so it always gives up before anyone else may take over). Paused past that, it steps
    down at its next tick however its renewal fares.
    """

    def __init__(self, db: Database, seconds: float, name: str = LEASE_NAME) -> None:
        self.db = db
        self.seconds = seconds
        self.name = name
        self.holder = f"{this_host()} pid:{os.getpid()} {secrets.token_hex(4)}"
        self.epoch: int | None = None
        self._valid_until = 0.0

    @property
    def held(self) -> bool:
        """Whether this process may still believe it leads (by its own clock)."""
        return self.epoch is not None and time.monotonic() < self._valid_until

    def try_acquire(self) -> bool:
        """Take the lease when nobody holds it or it has passed; True when this process now leads."""
        started = time.monotonic()
        with self.db.writer() as session:
            now = database_now(self.db, session)
            row = session.get(LeaderLease, self.name)
            if row is not None and row.holder != self.holder and row.lease_until > now:
                return False
            until = now + timedelta(seconds=self.seconds)
            if row is None:
                row = LeaderLease(name=self.name, holder=self.holder, epoch=1, lease_until=until, acquired_at=now)
                session.add(row)
            else:
                if row.holder != self.holder:
                    log.info("taking over the scheduler lease from %s (passed %s)", row.holder, row.lease_until)
                row.holder, row.epoch, row.lease_until, row.acquired_at = self.holder, row.epoch + 1, until, now
            session.flush()
            self.epoch = row.epoch
        self._valid_until = started + self.seconds
        return True

    def renew(self) -> bool:
        """Extend the lease; False (and no longer leading) when it passed or someone else holds it."""
        started = time.monotonic()
        if not self.held:
            log.warning("scheduler lease passed before it was renewed (was this process paused?)")
            self.epoch = None
            return False
        with self.db.writer() as session:
            until = database_now(self.db, session) + timedelta(seconds=self.seconds)
            result = session.execute(
                update(LeaderLease)
                .where(
                    LeaderLease.name == self.name, LeaderLease.holder == self.holder, LeaderLease.epoch == self.epoch
                )
                .values(lease_until=until)
            )
        if result.rowcount != 1:
            log.warning("scheduler lease was taken over by another process")
            self.epoch = None
            return False
        self._valid_until = started + self.seconds
        return True

    def release(self) -> None:
        """Give the lease up at once (a clean stop), so another host need not wait for it to pass."""
        epoch, self.epoch = self.epoch, None
        if epoch is None:
            return
        try:
            with self.db.writer() as session:
                session.execute(
                    update(LeaderLease)
                    .where(LeaderLease.name == self.name, LeaderLease.holder == self.holder, LeaderLease.epoch == epoch)
                    .values(lease_until=database_now(self.db, session))
                )
        except Exception as exc:  # unreachable: the lease simply passes
            log.warning("could not give the scheduler lease up (%s); it passes in %g s", exc, self.seconds)
