"""The store's small API: the only way the rest of the app writes conversation data.

Functions take the caller's session so several writes can share one transaction
(`with database.transaction() as session: ...`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import FromClause, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from store.database import changed_rows
from store.errors import NameTaken, NotOnRecord, Refused
from store.models import (
    Answer,
    Citation,
    Conversation,
    ConversationState,
    Escalation,
    EscalationPriority,
    EscalationStatus,
    EscalationTrigger,
    Feedback,
    Message,
    MessageRole,
    ModelVersion,
    ModelVersionStatus,
    SlackEvent,
)
from store.sources import SourceRef
from store.types import utcnow


@dataclass(frozen=True)
class CitationRecord:
    """A source the answer relied on, as retrieval reported it."""

    source: SourceRef
    chunk_id: str
    score: float


@dataclass(frozen=True)
class AnswerRecord:
    """Everything about one generated answer that the learning loop and audits need."""

    text: str
    prompt: str
    model: str
    endpoint: str
    latency_ms: int
    adapter: str | None = None
    model_version_id: int | None = None
    ttft_ms: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    confidence: float | None = None
    needs_human: bool = False
    slack_ts: str | None = None
    citations: Sequence[CitationRecord] = field(default_factory=tuple)
    # Audiences of the documents the prompt drew on; None: unknown, treated as restricted.
    source_audiences: Collection[str] | None = None
    generated_text: str | None = None  # the model's text before verification
    verification: Mapping[str, Any] | None = None
    quote: Mapping[str, Any] | None = None
    verified_answer_id: int | None = None  # a person's verified answer given instead


def claim_event(session: Session, event_id: str) -> bool:
    """Record a Slack event id; False when it was seen before (a retry or a second replica)."""
    return _insert_unless_exists(
        session, SlackEvent.__table__, {"event_id": event_id, "received_at": utcnow()}
    )


def find_conversation(
    session: Session, *, team_id: str, channel_id: str, thread_ts: str
) -> Conversation | None:
    return session.scalars(
        select(Conversation).where(
            Conversation.team_id == team_id,
            Conversation.channel_id == channel_id,
            Conversation.thread_ts == thread_ts,
        )
    ).one_or_none()


def find_or_open_conversation(
    session: Session, *, team_id: str, channel_id: str, thread_ts: str, user_id: str
) -> Conversation:
    """The conversation for a Slack thread, opened by `user_id` if it is new.

    Insert-if-absent first, then read: two replicas racing on the same thread end up with
    the same row instead of one of them failing on the unique constraint.
    """
    _insert_unless_exists(
        session,
        Conversation.__table__,
        {
            "team_id": team_id,
            "channel_id": channel_id,
            "thread_ts": thread_ts,
            "user_id": user_id,
            "state": ConversationState.BOT,
            "started_at": utcnow(),
        },
    )
    conversation = find_conversation(
        session, team_id=team_id, channel_id=channel_id, thread_ts=thread_ts
    )
    assert conversation is not None  # just inserted, or already there
    return conversation


class EscalationStateError(Refused):
    """A claim or resolve that the escalation's state does not allow; the message says why."""


def open_escalation(
    session: Session,
    conversation: Conversation,
    *,
    trigger: EscalationTrigger,
    priority: EscalationPriority = EscalationPriority.NORMAL,
    requested_by: str | None = None,
    question_message_id: int | None = None,
    answer_id: int | None = None,
) -> tuple[Escalation, bool]:
    """Hand the thread to people; an escalation still open or claimed is reused.

    Returns the escalation and whether it is new, so a second trigger in the same thread
    does not page anyone twice. The thread is escalated: the bot stays silent in it.
    """
    current = find_unresolved_escalation(session, conversation.id)
    if current is not None:
        return current, False
    escalation = Escalation(
        conversation=conversation,
        trigger=trigger.value,
        priority=priority.value,
        requested_by=requested_by,
        question_message_id=question_message_id,
        answer_id=answer_id,
    )
    conversation.state = ConversationState.ESCALATED
    session.add(escalation)
    session.flush()
    return escalation, True


def find_unresolved_escalation(session: Session, conversation_id: int) -> Escalation | None:
    return session.scalars(
        select(Escalation)
        .where(
            Escalation.conversation_id == conversation_id,
            Escalation.status != EscalationStatus.RESOLVED,
        )
        .order_by(Escalation.id)
    ).first()


def set_escalation_card(session: Session, escalation_id: int, *, channel: str, ts: str) -> None:
    escalation = session.get_one(Escalation, escalation_id)
    escalation.card_channel, escalation.card_ts = channel, ts
    session.flush()


def claim_escalation(
    session: Session, escalation_id: int, assignee: str
) -> tuple[Escalation, bool]:
    """Assign the escalation; True when this call claimed it (a second click changes nothing)."""
    escalation = _escalation_for_update(session, escalation_id)
    if escalation.status is EscalationStatus.RESOLVED:
        raise EscalationStateError("it is already resolved")
    if escalation.status is EscalationStatus.CLAIMED and escalation.assignee != assignee:
        raise EscalationStateError(f"<@{escalation.assignee}> has already claimed it")
    if escalation.status is not EscalationStatus.OPEN:
        return escalation, False
    escalation.status = EscalationStatus.CLAIMED
    escalation.assignee = assignee
    escalation.claimed_at = utcnow()
    session.flush()
    return escalation, True


def resolve_escalation(
    session: Session, escalation_id: int, *, resolution: str, resolved_by: str
) -> Escalation:
    """Store the final answer and give the thread back to the bot."""
    escalation = _escalation_for_update(session, escalation_id)
    if escalation.status is EscalationStatus.RESOLVED:
        raise EscalationStateError("it is already resolved")
    now = utcnow()
    if escalation.assignee is None:  # resolved without a claim: the resolver owned it
        escalation.assignee = resolved_by
        escalation.claimed_at = now
    escalation.status = EscalationStatus.RESOLVED
    escalation.resolution = resolution
    escalation.resolved_at = now
    escalation.conversation.state = ConversationState.BOT
    session.flush()
    return escalation


def escalations_due_reminder(
    session: Session, *, unclaimed_for: timedelta, max_reminders: int
) -> list[Escalation]:
    """Open escalations unclaimed for `unclaimed_for` since they were posted or reminded."""
    cutoff = utcnow() - unclaimed_for
    last_nudge = func.coalesce(Escalation.last_reminded_at, Escalation.created_at)
    return list(
        session.scalars(
            select(Escalation)
            .where(
                Escalation.status == EscalationStatus.OPEN,
                Escalation.reminders_sent < max_reminders,
                last_nudge <= cutoff,
            )
            .order_by(Escalation.created_at)
        )
    )


def take_reminder(session: Session, escalation_id: int, *, sent_so_far: int) -> bool:
    """Count one more reminder, unless another replica already did: True if this one may send."""
    result = session.execute(
        update(Escalation)
        .where(
            Escalation.id == escalation_id,
            Escalation.reminders_sent == sent_so_far,
            Escalation.status == EscalationStatus.OPEN,
        )
        .values(reminders_sent=sent_so_far + 1, last_reminded_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return changed_rows(result) == 1


def list_escalations(session: Session, status: EscalationStatus | None = None) -> list[Escalation]:
    query = select(Escalation).order_by(Escalation.created_at)
    if status is not None:
        query = query.where(Escalation.status == status)
    return list(session.scalars(query))


def last_reply_by(session: Session, conversation_id: int, user_id: str) -> Message | None:
    """The latest message a person (not the bot) wrote in the thread."""
    return session.scalars(
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.user_id == user_id,
            Message.role == MessageRole.HUMAN,
        )
        .order_by(Message.id.desc())
    ).first()


def downvotes_in_thread(session: Session, conversation_id: int) -> int:
    """👎 votes on the bot's answers in the thread, one per person per answer."""
    return (
        session.scalar(
            select(func.count(Feedback.id))
            .join(Answer, Feedback.answer_id == Answer.id)
            .join(Message, Answer.message_id == Message.id)
            .where(Message.conversation_id == conversation_id, Feedback.value == -1)
        )
        or 0
    )


def _escalation_for_update(session: Session, escalation_id: int) -> Escalation:
    # Row lock on PostgreSQL, so two people clicking Claim at once are served in turn.
    escalation = session.scalars(
        select(Escalation).where(Escalation.id == escalation_id).with_for_update()
    ).one_or_none()
    if escalation is None:
        raise NotOnRecord(f"escalation {escalation_id} does not exist")
    return escalation


def record_message(
    session: Session,
    conversation: Conversation,
    *,
    role: MessageRole,
    text: str,
    user_id: str | None = None,
    slack_ts: str | None = None,
) -> Message:
    message = Message(
        conversation=conversation, role=role, text=text, user_id=user_id, slack_ts=slack_ts
    )
    session.add(message)
    session.flush()
    return message


def record_user_message(
    session: Session,
    conversation: Conversation,
    *,
    text: str,
    user_id: str,
    slack_ts: str | None = None,
) -> Message:
    return record_message(
        session, conversation, role=MessageRole.USER, text=text, user_id=user_id, slack_ts=slack_ts
    )


def record_answer(session: Session, conversation: Conversation, record: AnswerRecord) -> Answer:
    """Store the assistant's message, the answer's provenance and its ranked citations."""
    message = record_message(
        session,
        conversation,
        role=MessageRole.ASSISTANT,
        text=record.text,
        slack_ts=record.slack_ts,
    )
    answer = Answer(
        message=message,
        prompt=record.prompt,
        model=record.model,
        adapter=record.adapter,
        endpoint=record.endpoint,
        model_version_id=record.model_version_id,
        latency_ms=record.latency_ms,
        ttft_ms=record.ttft_ms,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        confidence=record.confidence,
        needs_human=record.needs_human,
        source_audiences=(
            None if record.source_audiences is None else sorted(set(record.source_audiences))
        ),
        generated_text=record.generated_text,
        verification=None if record.verification is None else dict(record.verification),
        quote=None if record.quote is None else dict(record.quote),
        verified_answer_id=record.verified_answer_id,
        citations=[
            Citation.of(
                citation.source, chunk_id=citation.chunk_id, score=citation.score, rank=rank
            )
            for rank, citation in enumerate(record.citations, start=1)
        ],
    )
    session.add(answer)
    session.flush()
    return answer


def record_feedback(
    session: Session,
    *,
    answer_id: int,
    user_id: str,
    value: int,
    reason: str | None = None,
    reason_codes: Sequence[str] = (),
) -> Feedback:
    """One vote per user per answer: a second vote replaces the first.

    A vote without a reason keeps the reason given before (the 👎 modal stores the reason
    after the button press that cast the vote). `reason_codes` are the quick reasons picked.
    """
    codes = ",".join(reason_codes) or None
    if value not in (1, -1):
        raise ValueError(f"feedback value must be +1 or -1, got {value!r}")
    if session.get(Answer, answer_id) is None:
        raise NotOnRecord(f"answer {answer_id} does not exist")
    _insert_unless_exists(
        session,
        Feedback.__table__,
        {
            "answer_id": answer_id,
            "user_id": user_id,
            "value": value,
            "reason": reason,
            "reason_codes": codes,
            "created_at": utcnow(),
            "updated_at": utcnow(),
        },
    )
    feedback = session.scalars(
        select(Feedback)
        .where(Feedback.answer_id == answer_id, Feedback.user_id == user_id)
        .execution_options(populate_existing=True)
    ).one()
    new_reason = reason is not None and feedback.reason != reason
    new_codes = codes is not None and feedback.reason_codes != codes
    if feedback.value != value or new_reason or new_codes:
        feedback.value = value
        if reason is not None:
            feedback.reason = reason
        if codes is not None:
            feedback.reason_codes = codes
        feedback.updated_at = utcnow()
        session.flush()
    return feedback


def _insert_unless_exists(session: Session, table: FromClause, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on the table's unique keys; True if a row went in."""
    # A declarative model's __table__ is typed as any FromClause; a mapped class has a Table.
    assert isinstance(table, Table)
    dialect = session.get_bind().dialect.name
    statement: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).values(values).on_conflict_do_nothing()
    else:
        raise NotImplementedError(f"the store supports PostgreSQL and SQLite, not {dialect}")
    # RETURNING, because rowcount is not reliable for INSERT on every driver.
    returning = statement.returning(*table.primary_key.columns)
    return session.execute(returning).first() is not None


def register_model_version(
    session: Session,
    *,
    name: str,
    base_model: str,
    adapter_path: str | None,
    dataset_hash: str | None,
    metrics: dict[str, Any] | None = None,
) -> ModelVersion:
    """Record a newly trained adapter as a candidate; names are never reused."""
    if find_model_version(session, name) is not None:
        raise NameTaken(f"a model version named {name!r} exists already; pick a new name")
    version = ModelVersion(
        name=name,
        base_model=base_model,
        adapter_path=adapter_path,
        dataset_hash=dataset_hash,
        metrics=metrics or {},
        status=ModelVersionStatus.CANDIDATE,
    )
    session.add(version)
    session.flush()
    return version


def find_model_version(session: Session, name: str) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).where(ModelVersion.name == name)).one_or_none()


def promoted_version(session: Session) -> ModelVersion | None:
    """The version that answers unrouted questions now; None while the base model does."""
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.status == ModelVersionStatus.PROMOTED)
        .order_by(ModelVersion.promoted_at.desc())
    ).first()


def canary_version(session: Session) -> ModelVersion | None:
    """The candidate answering a share of questions beside the promoted version, if any."""
    return session.scalars(
        select(ModelVersion)
        .where(
            ModelVersion.status == ModelVersionStatus.CANDIDATE,
            ModelVersion.canary_share > 0,
        )
        .order_by(ModelVersion.created_at.desc())
    ).first()
