"""The repository API round-trips what the bot records, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import StatementError

from store import repository
from store.database import Database
from store.models import (
    Answer,
    Citation,
    Conversation,
    ConversationState,
    Escalation,
    EscalationStatus,
    EscalationTrigger,
    Feedback,
    Message,
    MessageRole,
    ModelVersion,
)
from store.repository import AnswerRecord, CitationRecord
from store.sources import SourceRef

THREAD = {"team_id": "T1", "channel_id": "C1", "thread_ts": "1732460000.000100"}


def _answer_record(**overrides: object) -> AnswerRecord:
    values: dict[str, object] = {
        "text": "Loads over 26,000 lb need the shift lead's approval [1].",
        "prompt": "SYSTEM ... [1] Load Approval Thresholds (v3) ... QUESTION who approves 30k lb",
        "model": "smollm2-135m-instruct",
        "adapter": "voice-v1",
        "endpoint": "http://127.0.0.1:8100/v1",
        "latency_ms": 812,
        "ttft_ms": 190,
        "prompt_tokens": 380,
        "completion_tokens": 42,
        "confidence": 0.74,
        "citations": (
            CitationRecord(
                SourceRef(
                    doc_id="load-approval",
                    title="Load Approval Thresholds",
                    section="Load Approval Thresholds > Approval by weight",
                    version=3,
                    effective_from=date(2026, 3, 1),
                ),
                chunk_id="c-1",
                score=0.82,
            ),
            CitationRecord(
                SourceRef("hazmat", "Hazmat", "Hazmat", 1, date(2026, 1, 15)),
                chunk_id="c-9",
                score=0.41,
            ),
        ),
    }
    values.update(overrides)
    return AnswerRecord(**values)  # type: ignore[arg-type]


def _open_thread(database: Database) -> int:
    with database.transaction() as session:
        conversation = repository.find_or_open_conversation(session, **THREAD, user_id="U1")
        return conversation.id


def _record_answer(database: Database, **overrides: object) -> int:
    with database.transaction() as session:
        conversation = repository.find_or_open_conversation(session, **THREAD, user_id="U1")
        repository.record_user_message(
            session, conversation, text="who approves a 30k lb load", user_id="U1"
        )
        return repository.record_answer(session, conversation, _answer_record(**overrides)).id


def test_a_thread_maps_to_one_conversation(database: Database) -> None:
    first = _open_thread(database)
    again = _open_thread(database)
    with database.transaction() as session:
        other = repository.find_or_open_conversation(
            session, **{**THREAD, "thread_ts": "1732460099.000200"}, user_id="U2"
        ).id
        found = repository.find_conversation(session, **THREAD)
        assert found is not None
        assert found.state == ConversationState.BOT
        assert found.user_id == "U1"

    assert first == again
    assert other != first


def test_repeated_event_id_is_claimed_once(database: Database) -> None:
    with database.transaction() as session:
        assert repository.claim_event(session, "Ev01") is True
    with database.transaction() as session:
        assert repository.claim_event(session, "Ev01") is False
        assert repository.claim_event(session, "Ev02") is True


def test_concurrent_deliveries_of_one_event_are_claimed_once(database: Database) -> None:
    # Slack retries and a second replica can deliver the same event at the same moment.
    results: list[bool] = []
    lock = threading.Lock()

    def deliver() -> None:
        with database.transaction() as session:
            claimed = repository.claim_event(session, "EvRace")
        with lock:
            results.append(claimed)

    workers = [threading.Thread(target=deliver) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert sorted(results) == [False] * 7 + [True]


def test_answer_with_citations_round_trips(database: Database) -> None:
    answer_id = _record_answer(database)

    with database.transaction() as session:
        answer = session.get(Answer, answer_id)
        assert answer is not None
        assert answer.prompt.startswith("SYSTEM")
        assert (answer.model, answer.adapter, answer.endpoint) == (
            "smollm2-135m-instruct",
            "voice-v1",
            "http://127.0.0.1:8100/v1",
        )
        assert (answer.latency_ms, answer.ttft_ms) == (812, 190)
        assert (answer.prompt_tokens, answer.completion_tokens) == (380, 42)
        assert answer.confidence == pytest.approx(0.74)
        assert answer.needs_human is False
        assert answer.message.role == MessageRole.ASSISTANT
        assert answer.message.text.startswith("Loads over 26,000 lb")
        assert [(c.rank, c.doc_id, c.version) for c in answer.citations] == [
            (1, "load-approval", 3),
            (2, "hazmat", 1),
        ]
        assert answer.citations[0].section == "Load Approval Thresholds > Approval by weight"
        history = [m.role for m in answer.message.conversation.messages]
        assert history == [MessageRole.USER, MessageRole.ASSISTANT]


def test_answer_records_the_model_version_that_produced_it(database: Database) -> None:
    with database.transaction() as session:
        version = ModelVersion(name="voice-v1", base_model="SmolLM2-135M-Instruct")
        session.add(version)
        session.flush()
        version_id = version.id

    answer_id = _record_answer(database, model_version_id=version_id)

    with database.transaction() as session:
        answer = session.get(Answer, answer_id)
        assert answer is not None
        assert answer.model_version is not None
        assert answer.model_version.name == "voice-v1"


def test_feedback_is_one_vote_per_user_and_a_change_updates_it(database: Database) -> None:
    answer_id = _record_answer(database)

    with database.transaction() as session:
        first = repository.record_feedback(session, answer_id=answer_id, user_id="U1", value=1)
        first_id, created_at, first_updated = first.id, first.created_at, first.updated_at
    with database.transaction() as session:
        changed = repository.record_feedback(
            session, answer_id=answer_id, user_id="U1", value=-1, reason="out of date"
        )
        assert changed.id == first_id
    with database.transaction() as session:
        repository.record_feedback(session, answer_id=answer_id, user_id="U2", value=1)

    with database.transaction() as session:
        votes = session.scalars(
            select(Feedback).where(Feedback.answer_id == answer_id).order_by(Feedback.user_id)
        ).all()
        assert [(v.user_id, v.value, v.reason) for v in votes] == [
            ("U1", -1, "out of date"),
            ("U2", 1, None),
        ]
        assert votes[0].created_at == created_at
        assert votes[0].updated_at > first_updated


def test_a_vote_without_a_reason_keeps_the_reason_already_given(database: Database) -> None:
    answer_id = _record_answer(database)
    with database.transaction() as session:
        repository.record_feedback(
            session, answer_id=answer_id, user_id="U1", value=-1, reason="unclear"
        )
    with database.transaction() as session:
        kept = repository.record_feedback(session, answer_id=answer_id, user_id="U1", value=-1)
        assert kept.reason == "unclear"


def test_the_modal_adds_reason_codes_and_text_to_the_vote_already_cast(
    database: Database,
) -> None:
    answer_id = _record_answer(database)
    with database.transaction() as session:
        repository.record_feedback(session, answer_id=answer_id, user_id="U1", value=-1)
    with database.transaction() as session:
        repository.record_feedback(
            session,
            answer_id=answer_id,
            user_id="U1",
            value=-1,
            reason="the limit changed in March",
            reason_codes=["wrong", "out_of_date"],
        )
    with database.transaction() as session:
        votes = session.scalars(select(Feedback)).all()
        assert [(v.value, v.reason_codes, v.reason) for v in votes] == [
            (-1, "wrong,out_of_date", "the limit changed in March")
        ]


def test_feedback_rejects_bad_values_and_unknown_answers(database: Database) -> None:
    answer_id = _record_answer(database)
    with database.transaction() as session, pytest.raises(ValueError, match=r"\+1 or -1"):
        repository.record_feedback(session, answer_id=answer_id, user_id="U1", value=5)
    with database.transaction() as session, pytest.raises(LookupError, match="answer 9999"):
        repository.record_feedback(session, answer_id=9999, user_id="U1", value=1)


def test_timestamps_come_back_timezone_aware_in_utc(database: Database) -> None:
    before = datetime.now(UTC)
    answer_id = _record_answer(database)

    with database.transaction() as session:
        answer = session.get(Answer, answer_id)
        assert answer is not None
        for stamp in (answer.created_at, answer.message.created_at):
            assert stamp.tzinfo is not None
            assert stamp.utcoffset() == timedelta(0)
            assert stamp >= before.replace(microsecond=0)


def test_naive_timestamps_are_refused(database: Database) -> None:
    conversation_id = _open_thread(database)
    with database.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        conversation.started_at = datetime(2026, 1, 1)  # noqa: DTZ001 - the point of the test
        with pytest.raises(StatementError, match="timezone-aware"):
            session.flush()
        session.rollback()


def test_deleting_a_conversation_removes_its_rows(database: Database) -> None:
    answer_id = _record_answer(database)
    with database.transaction() as session:
        repository.record_feedback(session, answer_id=answer_id, user_id="U1", value=1)

    with database.transaction() as session:
        conversation = repository.find_conversation(session, **THREAD)
        assert conversation is not None
        session.delete(conversation)

    with database.transaction() as session:
        for model in (Message, Answer, Citation, Feedback):
            assert session.scalar(select(func.count()).select_from(model)) == 0


def _escalate(database: Database) -> int:
    with database.transaction() as session:
        conversation = repository.find_or_open_conversation(session, **THREAD, user_id="U1")
        escalation, is_new = repository.open_escalation(
            session, conversation, trigger=EscalationTrigger.ASKED, requested_by="U1"
        )
        assert is_new
        again, is_new = repository.open_escalation(
            session, conversation, trigger=EscalationTrigger.BUTTON, requested_by="U2"
        )
        assert again.id == escalation.id
        assert not is_new  # one escalation per thread until it is resolved
        return escalation.id


def test_an_escalation_is_claimed_by_one_person_and_resolved_once(database: Database) -> None:
    escalation_id = _escalate(database)

    with database.transaction() as session:
        _, claimed = repository.claim_escalation(session, escalation_id, "U0ANN")
        _, again = repository.claim_escalation(session, escalation_id, "U0ANN")
        assert (claimed, again) == (True, False)
        with pytest.raises(repository.EscalationStateError, match="U0ANN"):
            repository.claim_escalation(session, escalation_id, "U0BEN")
    with database.transaction() as session:
        resolved = repository.resolve_escalation(
            session, escalation_id, resolution="Refuse it on the BOL.", resolved_by="U0ANN"
        )
        assert resolved.status is EscalationStatus.RESOLVED
        assert resolved.conversation.state is ConversationState.BOT
        assert resolved.created_at <= resolved.claimed_at <= resolved.resolved_at
    with database.transaction() as session, pytest.raises(repository.EscalationStateError):
        repository.resolve_escalation(session, escalation_id, resolution="x", resolved_by="U0BEN")


def test_each_reminder_is_taken_by_one_replica(database: Database) -> None:
    escalation_id = _escalate(database)
    with database.transaction() as session:
        due = repository.escalations_due_reminder(
            session, unclaimed_for=timedelta(0), max_reminders=2
        )
        assert [e.id for e in due] == [escalation_id]
        not_yet = repository.escalations_due_reminder(
            session, unclaimed_for=timedelta(minutes=10), max_reminders=2
        )
        assert not_yet == []

    # Two replicas saw the same due escalation; only the first may send the reminder.
    with database.transaction() as session:
        first = repository.take_reminder(session, escalation_id, sent_so_far=0)
    with database.transaction() as session:
        second = repository.take_reminder(session, escalation_id, sent_so_far=0)
    assert (first, second) == (True, False)
    with database.transaction() as session:
        assert session.get_one(Escalation, escalation_id).reminders_sent == 1
        repository.claim_escalation(session, escalation_id, "U0ANN")
    with database.transaction() as session:  # a claimed escalation is never reminded
        assert not repository.take_reminder(session, escalation_id, sent_so_far=1)
