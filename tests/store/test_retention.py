"""`purge_older_than` deletes old conversations with every row under them, keeps unresolved
escalations, and keeps exact daily counts, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from store.database import Database
from store.models import (
    ActivityDaily,
    Answer,
    Base,
    Citation,
    Conversation,
    Escalation,
    EscalationStatus,
    EscalationTrigger,
    Feedback,
    Message,
    MessageRole,
    ModelVersion,
    SlackEvent,
)
from store.retention import PurgeReport, purge_older_than

CUTOFF = datetime(2025, 6, 1, tzinfo=UTC)
OLD = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
RECENT = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
COUNTED_TABLES = ("conversations", "messages", "answers", "citations", "feedback", "escalations")


def _add_thread(
    database: Database,
    thread_ts: str,
    started_at: datetime,
    *,
    adapter: str | None = "voice-v1",
    votes: Sequence[int] = (),
    escalation: tuple[EscalationTrigger, EscalationStatus] | None = None,
    reply_at: datetime | None = None,
) -> int:
    """A question, an answer with two citations, votes, an escalation and a late reply.

    The answer comes a minute after the question, the votes two, the escalation three.
    """
    with database.transaction() as session:
        version = session.scalars(select(ModelVersion)).first() or ModelVersion(
            name="voice-v1", base_model="base", adapter_path="/adapters/voice-v1"
        )
        conversation = Conversation(
            team_id="T1", channel_id="C1", thread_ts=thread_ts, user_id="U1", started_at=started_at
        )
        question = Message(
            conversation=conversation,
            role=MessageRole.USER,
            text="who approves a 30k lb load?",
            user_id="U1",
            created_at=started_at,
        )
        reply = Message(
            conversation=conversation,
            role=MessageRole.ASSISTANT,
            text="The shift lead [1].",
            created_at=started_at + MINUTE,
        )
        answer = Answer(
            message=reply,
            prompt="SYSTEM ... QUESTION",
            model="base",
            adapter=adapter,
            model_version=version,
            endpoint="http://vllm:8000/v1",
            latency_ms=700,
            created_at=started_at + MINUTE,
            citations=[
                Citation(
                    doc_id="load-approval", version=3, chunk_id=f"c-{rank}", score=0.8, rank=rank
                )
                for rank in (1, 2)
            ],
            feedback=[
                Feedback(
                    user_id=f"U{voter}",
                    value=value,
                    created_at=started_at + 2 * MINUTE,
                    updated_at=started_at + 2 * MINUTE,
                )
                for voter, value in enumerate(votes, start=1)
            ],
        )
        session.add_all([conversation, answer])
        if escalation is not None:
            trigger, status = escalation
            session.add(
                Escalation(
                    conversation=conversation,
                    trigger=trigger.value,
                    status=status,
                    created_at=started_at + 3 * MINUTE,
                    question_message=question,
                    answer=answer,
                )
            )
        if reply_at is not None:
            session.add(
                Message(
                    conversation=conversation,
                    role=MessageRole.HUMAN,
                    text="Done, thanks.",
                    user_id="U9",
                    created_at=reply_at,
                )
            )
        session.flush()
        return conversation.id


def _row_counts(database: Database) -> dict[str, int]:
    with database.transaction() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


def _daily(database: Database) -> dict[tuple[date, str], dict[str, int]]:
    """activity_daily's non-zero counts by (day, adapter)."""
    columns = [c.name for c in ActivityDaily.__table__.columns if not c.primary_key]
    with database.transaction() as session:
        rows = session.scalars(select(ActivityDaily)).all()
        return {
            (row.day, row.adapter): {
                name: getattr(row, name) for name in columns if getattr(row, name)
            }
            for row in rows
        }


def _remaining_threads(database: Database) -> set[str]:
    with database.transaction() as session:
        return set(session.scalars(select(Conversation.thread_ts)))


def test_an_old_conversation_goes_with_every_row_under_it(database: Database) -> None:
    _add_thread(
        database,
        "old",
        OLD,
        votes=(1, -1),
        escalation=(EscalationTrigger.BUTTON, EscalationStatus.RESOLVED),
        reply_at=OLD + 5 * MINUTE,
    )
    _add_thread(database, "recent", RECENT, votes=(1,))
    # Started long ago, but someone replied after the cutoff: still in use.
    _add_thread(database, "revived", OLD, reply_at=RECENT)

    report = purge_older_than(database, CUTOFF)

    assert _remaining_threads(database) == {"recent", "revived"}
    assert report.removed() == {
        "conversations": 1,
        "messages": 3,
        "answers": 1,
        "citations": 2,
        "feedback": 2,
        "escalations": 1,
        "slack_events": 0,
    }
    # The cascades left nothing behind: only the two kept threads' rows remain.
    counts = _row_counts(database)
    assert {name: counts[name] for name in COUNTED_TABLES} == {
        "conversations": 2,
        "messages": 2 + 3,
        "answers": 2,
        "citations": 4,
        "feedback": 1,
        "escalations": 0,
    }
    assert counts["model_versions"] == 1  # never purged, though its answers went


def test_an_unresolved_escalation_keeps_its_conversation_however_old(database: Database) -> None:
    asked = (EscalationTrigger.ASKED, EscalationStatus.OPEN)
    claimed = (EscalationTrigger.SENSITIVE, EscalationStatus.CLAIMED)
    resolved = (EscalationTrigger.WEAK_EVIDENCE, EscalationStatus.RESOLVED)
    _add_thread(database, "open", OLD, escalation=asked)
    _add_thread(database, "claimed", OLD, escalation=claimed)
    _add_thread(database, "resolved", OLD, escalation=resolved)

    report = purge_older_than(database, CUTOFF)

    assert _remaining_threads(database) == {"open", "claimed"}
    assert (report.conversations, report.escalations, report.kept_unresolved) == (1, 1, 2)
    assert _row_counts(database)["escalations"] == 2


def test_daily_counts_add_up_across_purges_and_never_twice(database: Database) -> None:
    # Two minutes before midnight UTC, in a zone five hours behind: the votes and the
    # escalation fall on the next UTC day, and each row counts on its own day.
    late = datetime(2025, 3, 4, 18, 58, tzinfo=timezone(timedelta(hours=-5)))
    _add_thread(
        database,
        "late",
        late,
        votes=(1, 1, -1),
        escalation=(EscalationTrigger.SENSITIVE, EscalationStatus.RESOLVED),
    )
    march_4, march_5 = date(2025, 3, 4), date(2025, 3, 5)

    first = purge_older_than(database, CUTOFF)

    after_first = {
        (march_4, ""): {"conversations": 1, "questions": 1},
        (march_4, "voice-v1"): {"answers": 1},
        (march_5, "voice-v1"): {"thumbs_up": 2, "thumbs_down": 1},
        (march_5, ""): {"escalations": 1, "escalations_sensitive": 1},
    }
    assert _daily(database) == after_first
    assert (first.conversations, first.feedback, first.days) == (1, 3, 2)

    # The same day again, from the base model (no adapter): added to the rows already there.
    _add_thread(
        database,
        "morning",
        OLD,
        adapter=None,
        votes=(-1,),
        escalation=(EscalationTrigger.BUTTON, EscalationStatus.RESOLVED),
    )
    purge_older_than(database, CUTOFF)

    assert _daily(database) == {
        **after_first,
        (march_4, ""): {
            "conversations": 2,
            "questions": 2,
            "answers": 1,
            "thumbs_down": 1,
            "escalations": 1,
            "escalations_button": 1,
        },
    }

    nothing_left = purge_older_than(database, CUTOFF)
    assert nothing_left.conversations == 0
    assert _daily(database)[(march_4, "")]["conversations"] == 2


def test_a_dry_run_reports_the_same_numbers_and_changes_nothing(database: Database) -> None:
    _add_thread(
        database,
        "old",
        OLD,
        votes=(1,),
        escalation=(EscalationTrigger.ASKED, EscalationStatus.RESOLVED),
    )
    _add_thread(database, "open", OLD, escalation=(EscalationTrigger.ASKED, EscalationStatus.OPEN))
    _add_thread(database, "recent", RECENT)
    with database.transaction() as session:
        session.add(SlackEvent(event_id="Ev-old", received_at=OLD))
    before = _row_counts(database)

    dry = purge_older_than(database, CUTOFF, dry_run=True)

    assert _row_counts(database) == before
    assert dry.dry_run
    real = purge_older_than(database, CUTOFF)
    assert _fields(dry) == _fields(real)
    assert dry.conversations == 1
    assert dry.slack_events == 1
    assert dry.kept_unresolved == 1


def _fields(report: PurgeReport) -> dict[str, object]:
    return {**report.removed(), "kept": report.kept_unresolved, "days": report.days}


def test_slack_event_ids_older_than_the_cutoff_go(database: Database) -> None:
    with database.transaction() as session:
        session.add_all(
            [SlackEvent(event_id=f"Ev-old-{n}", received_at=OLD + n * MINUTE) for n in range(5)]
        )
        session.add(SlackEvent(event_id="Ev-new", received_at=RECENT))

    report = purge_older_than(database, CUTOFF, batch_size=2)

    assert report.slack_events == 5
    with database.transaction() as session:
        assert list(session.scalars(select(SlackEvent.event_id))) == ["Ev-new"]


def test_small_batches_purge_everything_once(database: Database) -> None:
    for n in range(7):
        _add_thread(database, f"old-{n}", OLD + n * MINUTE, votes=(1,))
    seen: list[int] = []

    report = purge_older_than(database, CUTOFF, batch_size=3, on_batch=seen.append)

    assert seen == [3, 6, 7]
    assert report.conversations == 7
    assert _daily(database)[(OLD.date(), "voice-v1")] == {"answers": 7, "thumbs_up": 7}


def test_two_purges_at_once_count_each_conversation_once(database: Database) -> None:
    threads = 24
    for n in range(threads):
        _add_thread(database, f"old-{n}", OLD, votes=(1, -1))
    url = database.url.render_as_string(hide_password=False)
    reports: list[PurgeReport] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def purge() -> None:
        # Its own engine, as a second process would have.
        other = Database(url)
        try:
            start.wait()
            reports.append(purge_older_than(other, CUTOFF, batch_size=2))
        except BaseException as error:  # surfaced by the assert below
            errors.append(error)
        finally:
            other.dispose()

    workers = [threading.Thread(target=purge) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert errors == []
    assert sum(report.conversations for report in reports) == threads
    daily = _daily(database)
    assert daily[(OLD.date(), "")] == {"conversations": threads, "questions": threads}
    assert daily[(OLD.date(), "voice-v1")] == {
        "answers": threads,
        "thumbs_up": threads,
        "thumbs_down": threads,
    }
    assert _row_counts(database)["messages"] == 0


def test_a_naive_cutoff_is_refused(database: Database) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        purge_older_than(database, datetime(2025, 6, 1))  # noqa: DTZ001 - the point of the test
