"""Job locks in the store, on SQLite and PostgreSQL: one holder at a time, expired locks
taken over, renewed while held, released however the block ends."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from store.database import Database
from store.locks import LockHeld, LockLost, hold_lock
from store.models import JobLock
from store.types import utcnow

HOUR = timedelta(hours=1)


def _row(database: Database, name: str = "learn") -> JobLock | None:
    with database.transaction() as session:
        return session.scalar(select(JobLock).where(JobLock.name == name))


def test_a_second_acquirer_is_told_who_holds_the_lock_and_since_when(database: Database) -> None:
    with hold_lock(database, "learn", "host-a pid 1", HOUR) as held:
        with pytest.raises(LockHeld) as refused, hold_lock(database, "learn", "host-b pid 2", HOUR):
            pytest.fail("two holders at once")
        # Another job's lock is independent.
        with hold_lock(database, "reindex", "host-b pid 2", HOUR):
            pass

    assert refused.value.holder == "host-a pid 1"
    assert refused.value.since == held.acquired_at
    assert "held by host-a pid 1 since" in str(refused.value)
    assert _row(database) is None  # released on exit
    with hold_lock(database, "learn", "host-b pid 2", HOUR):
        assert _row(database).holder == "host-b pid 2"


def test_an_expired_lock_is_taken_over(database: Database) -> None:
    with hold_lock(database, "learn", "died pid 1", HOUR, renew_every=HOUR) as dead:
        with database.transaction() as session:  # as if its holder had stopped an hour ago
            session.execute(update(JobLock).values(expires_at=utcnow() - timedelta(seconds=1)))

        with hold_lock(database, "learn", "host-b pid 2", HOUR) as taken:
            assert _row(database).holder == "host-b pid 2"
            with pytest.raises(LockLost):
                dead.check()
            taken.check()
        # The taker released it; the first holder's exit must not delete someone else's row.
        with hold_lock(database, "learn", "host-c pid 3", HOUR):
            pass
        with hold_lock(database, "learn", "host-d pid 4", HOUR):
            pass
    assert _row(database) is None


def test_the_lock_is_released_when_the_block_raises(database: Database) -> None:
    with (
        pytest.raises(RuntimeError, match="training failed"),
        hold_lock(database, "learn", "host-a pid 1", HOUR),
    ):
        raise RuntimeError("training failed")

    assert _row(database) is None


def test_a_held_lock_is_renewed_so_it_never_expires_while_its_job_runs(
    database: Database,
) -> None:
    ttl = timedelta(seconds=1.0)
    with hold_lock(database, "learn", "host-a pid 1", ttl, renew_every=timedelta(seconds=0.2)):
        first = _row(database).expires_at
        time.sleep(1.3)  # longer than the ttl
        with pytest.raises(LockHeld), hold_lock(database, "learn", "host-b pid 2", ttl):
            pass
        assert _row(database).expires_at > first


def test_of_many_racing_acquirers_exactly_one_wins(database: Database) -> None:
    with database.transaction() as session:  # an expired row: racers take over or insert
        session.add(
            JobLock(
                name="learn",
                holder="died",
                acquired_at=utcnow() - HOUR,
                expires_at=utcnow() - timedelta(minutes=1),
            )
        )
    start = threading.Barrier(6)
    winners: list[str] = []
    refused: list[str] = []
    release = threading.Event()

    def race(number: int) -> None:
        start.wait()
        try:
            with hold_lock(database, "learn", f"racer {number}", HOUR):
                winners.append(f"racer {number}")
                release.wait(10)
        except LockHeld as error:
            refused.append(error.holder)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(winners) + len(refused) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    release.set()
    for thread in threads:
        thread.join(timeout=20)

    assert len(winners) == 1
    assert refused == winners * 5
