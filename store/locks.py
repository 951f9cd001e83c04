"""Locks kept in the store, so a job runs in one process at a time across replicas and hosts.

A lock is a row of `job_locks`. Acquiring either takes over a row whose `expires_at` has
passed (its holder died or lost the database) with one conditional UPDATE, or INSERTs the
row, which the primary key refuses while someone else holds it; both are atomic on SQLite
and PostgreSQL. While the lock is held a thread moves `expires_at` forward every third of
the TTL, so a job may run for hours while a holder that died blocks the next run for one
TTL at most. Leaving the `with` block deletes the row.

Expiry is judged by the acquirer's clock: keep the hosts on NTP; a skew well below the TTL
does no harm.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from store.database import Database, changed_rows
from store.errors import Refused, Unavailable
from store.models import JobLock
from store.types import utcnow

logger = logging.getLogger(__name__)

_ACQUIRE_ATTEMPTS = 3  # a lock released between our INSERT and our look at it: try again


class LockHeld(Refused):
    """Someone else holds the lock; says who and since when."""

    def __init__(self, name: str, holder: str, since: datetime, expires_at: datetime) -> None:
        self.name = name
        self.holder = holder
        self.since = since
        self.expires_at = expires_at
        super().__init__(
            f"the {name!r} lock is held by {holder} since {since:%Y-%m-%d %H:%M:%S} UTC "
            f"(it expires at {expires_at:%Y-%m-%d %H:%M:%S} UTC unless its holder renews it)"
        )


class LockLost(Unavailable):
    """The lock expired while held (renewals failed) and another process took it over."""


@dataclass
class HeldLock:
    """The lock this process holds; `check()` before writing what the lock protects."""

    database: Database
    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime
    lost: bool = False

    def check(self) -> None:
        """Raise LockLost unless the row is still ours."""
        if not self.lost:
            with self.database.transaction() as session:
                self.lost = session.scalar(select(JobLock.name).where(*_ours(self))) is None
        if self.lost:
            raise LockLost(f"the {self.name!r} lock was taken over while {self.holder} held it")


@contextmanager
def hold_lock(
    database: Database,
    name: str,
    holder: str,
    ttl: timedelta,
    *,
    renew_every: timedelta | None = None,
) -> Iterator[HeldLock]:
    """Hold `name` for the block, or raise LockHeld at once; renewed while held, released
    on exit (an exception included)."""
    if ttl <= timedelta(0):
        raise ValueError(f"a lock's ttl must be positive, not {ttl}")
    lock = acquire_lock(database, name, holder, ttl)
    renewer = _Renewer(lock, ttl, renew_every or ttl / 3)
    renewer.start()
    try:
        yield lock
    finally:
        renewer.stop()
        release_lock(lock)


def acquire_lock(database: Database, name: str, holder: str, ttl: timedelta) -> HeldLock:
    for _ in range(_ACQUIRE_ATTEMPTS):
        now = utcnow()
        lock = HeldLock(database, name, holder, acquired_at=now, expires_at=now + ttl)
        values = {"holder": holder, "acquired_at": now, "expires_at": lock.expires_at}
        with database.transaction() as session:
            taken = session.execute(
                update(JobLock)
                .where(JobLock.name == name, JobLock.expires_at <= now)
                .values(**values)
            )
        if changed_rows(taken) == 1:
            logger.warning("took over the expired %r lock", name)
            return lock
        try:
            with database.transaction() as session:
                session.execute(insert(JobLock).values(name=name, **values))
            return lock
        except IntegrityError:
            with database.transaction() as session:
                current = session.get(JobLock, name)
                if current is not None:
                    raise LockHeld(
                        name, current.holder, current.acquired_at, current.expires_at
                    ) from None
    raise RuntimeError(f"could not acquire the {name!r} lock in {_ACQUIRE_ATTEMPTS} attempts")


def release_lock(lock: HeldLock) -> None:
    """Delete the row if it is still ours; a database that is down leaves it to expire."""
    try:
        with lock.database.transaction() as session:
            session.execute(delete(JobLock).where(*_ours(lock)))
    except SQLAlchemyError as error:
        logger.warning(
            "could not release the %r lock (%s); it expires at %s",
            lock.name,
            type(error).__name__,
            lock.expires_at.isoformat(timespec="seconds"),
        )


def renew_lock(lock: HeldLock, ttl: timedelta) -> bool:
    """Move the lock's expiry to now + ttl; False when it is no longer ours."""
    expires_at = utcnow() + ttl
    with lock.database.transaction() as session:
        renewed = session.execute(update(JobLock).where(*_ours(lock)).values(expires_at=expires_at))
    if changed_rows(renewed) != 1:
        lock.lost = True
        return False
    lock.expires_at = expires_at
    return True


def _ours(lock: HeldLock) -> tuple[ColumnElement[bool], ...]:
    # The holder and the moment of acquiring tell this hold from an earlier or later one.
    return (
        JobLock.name == lock.name,
        JobLock.holder == lock.holder,
        JobLock.acquired_at == lock.acquired_at,
    )


class _Renewer:
    """A daemon thread that renews the lock until stopped or until it is lost."""

    def __init__(self, lock: HeldLock, ttl: timedelta, every: timedelta) -> None:
        self._lock = lock
        self._ttl = ttl
        self._every_s = every.total_seconds()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lock-{lock.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stopped.wait(self._every_s):
            try:
                if not renew_lock(self._lock, self._ttl):
                    logger.error("lost the %r lock: another process took it over", self._lock.name)
                    return
            except SQLAlchemyError as error:
                # The next renewal tries again; the lock holds until expires_at meanwhile.
                logger.warning("could not renew the %r lock (%s)", self._lock.name, error)
