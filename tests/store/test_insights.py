"""The App Home's figures, read from a real store on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from home_seed import Seeder

from store.database import Database
from store.insights import (
    FeedbackTally,
    adapter_comparison,
    recent_feedback,
    store_insights,
    waiting_escalations,
)
from store.models import EscalationPriority, EscalationTrigger, ModelVersionStatus

# A fixed moment in a zone west of UTC, so local days and UTC days differ in the evening.
CENTRAL = timezone(timedelta(hours=-6))
NOW = datetime(2026, 3, 5, 10, 0, tzinfo=CENTRAL)

UP, DOWN = 1, -1


def test_the_promoted_adapter_is_compared_with_the_version_a_rollback_returns_to(
    database: Database,
) -> None:
    with database.transaction() as session:
        seed = Seeder(session, NOW)
        seed.version("voice-v0", ModelVersionStatus.RETIRED, promoted_ago=timedelta(days=30))
        v1 = seed.version("voice-v1", ModelVersionStatus.RETIRED, promoted_ago=timedelta(days=9))
        seed.version("voice-v9", ModelVersionStatus.REJECTED, promoted_ago=timedelta(days=5))
        v2 = seed.version("voice-v2", ModelVersionStatus.PROMOTED, promoted_ago=timedelta(days=3))
        seed.version("voice-v3", ModelVersionStatus.CANDIDATE)
        seed.votes(seed.answer("voice-v1"), [UP, UP, DOWN])
        seed.votes(seed.answer("voice-v1"), [UP])
        # Linked by id, by name, and by id where the name would say otherwise.
        seed.votes(seed.answer("voice-v2", model_version_id=v2.id), [UP, DOWN])
        seed.votes(seed.answer("voice-v2"), [UP, UP, UP])
        seed.votes(seed.answer("voice-v2", model_version_id=v1.id), [DOWN])
        seed.answer("voice-v2")  # no votes: counted as an answer only
        seed.votes(seed.answer(None), [DOWN, DOWN])  # the base model

        adapters = adapter_comparison(session)

    assert adapters.current.name == "voice-v2"
    assert adapters.current.status == "promoted"
    assert adapters.current.promoted_at == NOW - timedelta(days=3)
    assert (adapters.current.answers, adapters.current.feedback) == (3, FeedbackTally(4, 1))
    assert adapters.current.feedback.up_rate == pytest.approx(0.8)
    assert adapters.previous is not None
    assert adapters.previous.name == "voice-v1"
    assert (adapters.previous.answers, adapters.previous.feedback) == (3, FeedbackTally(3, 2))
    assert adapters.canary is None


def test_the_first_promoted_adapter_is_compared_with_the_base_model(database: Database) -> None:
    with database.transaction() as session:
        seed = Seeder(session, NOW)
        seed.version("voice-v1", ModelVersionStatus.PROMOTED, promoted_ago=timedelta(days=1))
        seed.votes(seed.answer(None), [UP, DOWN, DOWN])
        seed.votes(seed.answer("voice-v1"), [UP])

        adapters = adapter_comparison(session)

    assert adapters.current.name == "voice-v1"
    assert adapters.previous is not None
    assert adapters.previous.name is None
    assert (adapters.previous.answers, adapters.previous.feedback) == (1, FeedbackTally(1, 2))


def test_without_a_promoted_adapter_the_base_model_answers(database: Database) -> None:
    with database.transaction() as session:
        empty = adapter_comparison(session)
        seed = Seeder(session, NOW)
        # Rolled back from the only adapter there was: the base model answers again.
        seed.version("voice-v1", ModelVersionStatus.REJECTED, promoted_ago=timedelta(days=2))
        seed.votes(seed.answer("voice-v1"), [DOWN])
        rolled_back = adapter_comparison(session)

    assert empty.current.name is None
    assert (empty.current.answers, empty.current.feedback.up_rate) == (0, None)
    assert empty.previous is None
    assert rolled_back.current.name is None
    assert rolled_back.previous is not None
    assert rolled_back.previous.name == "voice-v1"
    assert rolled_back.previous.status == "rejected"
    assert rolled_back.previous.feedback == FeedbackTally(0, 1)


def test_a_canary_is_reported_beside_the_promoted_adapter(database: Database) -> None:
    with database.transaction() as session:
        seed = Seeder(session, NOW)
        seed.version("voice-v2", ModelVersionStatus.PROMOTED, promoted_ago=timedelta(days=3))
        seed.version("voice-v3", ModelVersionStatus.CANDIDATE, canary_share=0.1)
        seed.votes(seed.answer("voice-v3"), [UP, UP])

        adapters = adapter_comparison(session)

    assert adapters.canary is not None
    assert adapters.canary.name == "voice-v3"
    assert adapters.canary.canary_share == pytest.approx(0.1)
    assert adapters.canary.feedback == FeedbackTally(2, 0)


def test_waiting_escalations_come_high_priority_first_then_oldest_first(
    database: Database,
) -> None:
    with database.transaction() as session:
        seed = Seeder(session, NOW)
        seed.escalation(trigger=EscalationTrigger.ASKED, ago=timedelta(hours=3))
        urgent = seed.escalation(
            trigger=EscalationTrigger.SENSITIVE,
            priority=EscalationPriority.HIGH,
            ago=timedelta(minutes=10),
            channel_id="C0YARD",
            asker="U0CAROL",
        )
        claimed = seed.escalation(
            trigger=EscalationTrigger.BUTTON, ago=timedelta(hours=5), assignee="U0BOB"
        )
        seed.escalation(trigger=EscalationTrigger.BUTTON, ago=timedelta(days=1), resolved=True)

        queue = waiting_escalations(session, limit=2)

    assert queue.total == 3
    assert [escalation.id for escalation in queue.shown] == [urgent.id, claimed.id]
    first, second = queue.shown
    assert (first.status, first.trigger, first.priority) == ("open", "sensitive", "high")
    assert (first.channel_id, first.requested_by, first.assignee) == ("C0YARD", "U0CAROL", None)
    assert first.created_at == NOW - timedelta(minutes=10)
    assert (second.status, second.assignee) == ("claimed", "U0BOB")


def test_feedback_is_counted_per_local_day_over_the_last_seven(database: Database) -> None:
    with database.transaction() as session:
        seed = Seeder(session, NOW)
        answer = seed.answer("voice-v1")
        seed.votes(answer, [UP, UP], ago=timedelta(hours=1))
        # 23:30 yesterday here is already today in UTC: it counts for yesterday.
        late = NOW - datetime.combine(NOW.date() - timedelta(days=1), time(23, 30), CENTRAL)
        seed.votes(answer, [DOWN], reasons=["wrong", "out_of_date"], ago=late)
        seed.votes(answer, [DOWN], reasons=["wrong"], ago=timedelta(days=2))
        seed.votes(answer, [DOWN], ago=timedelta(days=3))  # no reason picked
        seed.votes(answer, [UP], ago=timedelta(days=6))
        seed.votes(answer, [UP, DOWN], ago=timedelta(days=8))  # before the window
        seed.votes(answer, [UP], ago=-timedelta(hours=1))  # after `now`

        feedback = recent_feedback(session, now=NOW)

    assert [day.day for day in feedback.days] == [
        date(2026, 2, 27) + timedelta(days=offset) for offset in range(7)
    ]
    counts = {day.day: (day.feedback.up, day.feedback.down) for day in feedback.days}
    assert counts == {
        date(2026, 2, 27): (1, 0),
        date(2026, 2, 28): (0, 0),
        date(2026, 3, 1): (0, 0),
        date(2026, 3, 2): (0, 1),
        date(2026, 3, 3): (0, 1),
        date(2026, 3, 4): (0, 1),
        date(2026, 3, 5): (2, 0),
    }
    assert feedback.total == FeedbackTally(3, 3)
    assert feedback.top_reasons == (("wrong", 2), ("out_of_date", 1))


def test_a_changed_vote_counts_once_on_the_day_it_changed(database: Database) -> None:
    with database.transaction() as session:
        seed = Seeder(session, NOW)
        [vote] = seed.votes(seed.answer("voice-v1"), [UP], ago=timedelta(days=10))
        vote.value, vote.updated_at = DOWN, NOW - timedelta(hours=2)

        feedback = recent_feedback(session, now=NOW)

    assert feedback.total == FeedbackTally(0, 1)
    assert feedback.days[-1].feedback == FeedbackTally(0, 1)


def test_store_insights_reads_all_three_parts(database: Database) -> None:
    now = datetime.now(UTC)
    with database.transaction() as session:
        seed = Seeder(session, now)
        seed.escalation(trigger=EscalationTrigger.ASKED, ago=timedelta(minutes=5))
        seed.votes(seed.answer(None), [UP])

        insights = store_insights(session, now=now, escalation_limit=15)

    assert insights.adapters.current.feedback == FeedbackTally(1, 0)
    assert insights.escalations.total == 1
    assert insights.feedback.total == FeedbackTally(1, 0)


def test_recent_feedback_needs_an_aware_now(database: Database) -> None:
    with database.transaction() as session, pytest.raises(ValueError, match="timezone-aware"):
        recent_feedback(session, now=datetime(2026, 3, 5, 10, 0))  # noqa: DTZ001
