"""The conversation store's tables; their names and columns are an interface that exports,
reports and operators' queries read.

Every schema change here needs an Alembic migration in `migrations/versions`; a test
compares these models with the migrated database and fails on any drift.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from store.sources import SourceRef
from store.types import UTCDateTime, utcnow

# Named constraints let migrations drop and alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SLACK_ID = 64  # team, channel and user ids and message timestamps all fit comfortably


class ConversationState(StrEnum):
    BOT = "bot"
    ESCALATED = "escalated"


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    HUMAN = "human"


class EscalationStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


class EscalationTrigger(StrEnum):
    BUTTON = "button"  # "Ask a person" under an answer
    ASKED = "asked"  # "get me a dispatcher", in words
    WEAK_EVIDENCE = "weak_evidence"  # no current policy covers the question
    SENSITIVE = "sensitive"  # accident, injury, spill, police, theft, threat...
    SECOND_DOWNVOTE = "second_downvote"  # a second 👎 in the same thread


class EscalationPriority(StrEnum):
    NORMAL = "normal"
    HIGH = "high"


class VerifiedAnswerStatus(StrEnum):
    ACTIVE = "active"  # answers questions close to it
    STALE = "stale"  # a policy it cites changed: held back until someone re-approves it
    RETIRED = "retired"  # withdrawn, or past its expiry date


class ModelVersionStatus(StrEnum):
    CANDIDATE = "candidate"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    RETIRED = "retired"


def _enum_column(enum: type[StrEnum], name: str) -> Enum:
    # Stored as plain strings with a CHECK constraint: portable, and readable in psql.
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Conversation(Base):
    """One Slack thread (or DM thread) and whether the bot or a person owns it."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_ts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[str] = mapped_column(String(SLACK_ID))
    channel_id: Mapped[str] = mapped_column(String(SLACK_ID))
    thread_ts: Mapped[str] = mapped_column(String(SLACK_ID))
    user_id: Mapped[str] = mapped_column(String(SLACK_ID))
    state: Mapped[ConversationState] = mapped_column(
        _enum_column(ConversationState, "state"), default=ConversationState.BOT
    )
    started_at: Mapped[datetime] = mapped_column(default=utcnow)

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", order_by="Message.id", passive_deletes=True
    )
    escalations: Mapped[list[Escalation]] = relationship(
        back_populates="conversation", order_by="Escalation.id", passive_deletes=True
    )


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_created", "conversation_id", "created_at"),
        # The rate limits count the last minute's questions (bot/rate_limits.py).
        Index("ix_messages_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[MessageRole] = mapped_column(_enum_column(MessageRole, "role"))
    text: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(String(SLACK_ID))
    slack_ts: Mapped[str | None] = mapped_column(String(SLACK_ID))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")
    answer: Mapped[Answer | None] = relationship(back_populates="message", passive_deletes=True)


class ModelVersion(Base):
    """A base model or LoRA adapter that has answered, or may answer, questions."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    base_model: Mapped[str] = mapped_column(String(256))
    adapter_path: Mapped[str | None] = mapped_column(String(1024))
    dataset_hash: Mapped[str | None] = mapped_column(String(128))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[ModelVersionStatus] = mapped_column(
        _enum_column(ModelVersionStatus, "status"), default=ModelVersionStatus.CANDIDATE
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set while it answers: rollback returns to the version promoted before this one.
    promoted_at: Mapped[datetime | None] = mapped_column()
    # Share of unrouted questions it answers while the promoted version answers the rest.
    canary_share: Mapped[float | None] = mapped_column(Float)


class Answer(Base):
    """What the model said for one assistant message, and everything needed to retrain on it."""

    __tablename__ = "answers"
    __table_args__ = (
        CheckConstraint(
            "confidence IS NULL OR (confidence >= 0 AND confidence <= 1)", "confidence"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), unique=True
    )
    prompt: Mapped[str] = mapped_column(Text)  # exactly as sent to the model
    model: Mapped[str] = mapped_column(String(256))
    adapter: Mapped[str | None] = mapped_column(String(128), index=True)
    endpoint: Mapped[str] = mapped_column(String(1024))
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), index=True
    )
    latency_ms: Mapped[int] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    confidence: Mapped[float | None] = mapped_column(Float)
    needs_human: Mapped[bool] = mapped_column(Boolean, default=False)
    # The audiences of every document the prompt drew on (its sources, and the sources of
    # the earlier answers in it), cited or not: the text may carry any of them, so it is
    # shown again only where all of them may be read. NULL (unknown) counts as restricted.
    source_audiences: Mapped[list[str] | None] = mapped_column(JSON)
    # The model's own text before verification; the message holds what the person was shown.
    generated_text: Mapped[str | None] = mapped_column(Text)
    # {"outcome": "passed" | which check failed, "found": [what it found], ...}
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The policy's own words shown with the answer: {text, doc_id, section, version, ...}
    quote: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Set when a person's verified answer was given instead of the model's. No foreign key:
    # verified answers are retired, never deleted, and one would close a cycle of keys
    # (answers -> verified_answers -> escalations -> answers).
    verified_answer_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    message: Mapped[Message] = relationship(back_populates="answer")
    model_version: Mapped[ModelVersion | None] = relationship()

    @property
    def shown_text(self) -> str:
        """What the person saw: the answer's text, then the policy's own words under it."""
        quoted = (self.quote or {}).get("text")
        return f"{self.message.text}\n\n{quoted}" if quoted else self.message.text

    citations: Mapped[list[Citation]] = relationship(
        back_populates="answer", order_by="Citation.rank", passive_deletes=True
    )
    feedback: Mapped[list[Feedback]] = relationship(
        back_populates="answer", order_by="Feedback.id", passive_deletes=True
    )


class Citation(Base):
    """A policy chunk the answer relied on, pinned to the document version it came from."""

    __tablename__ = "citations"
    __table_args__ = (UniqueConstraint("answer_id", "rank"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id", ondelete="CASCADE"))
    doc_id: Mapped[str] = mapped_column(String(256), index=True)
    version: Mapped[int] = mapped_column(Integer)
    chunk_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str | None] = mapped_column(String(512))
    section: Mapped[str | None] = mapped_column(String(1024))
    score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(SmallInteger)
    # What a card or an audit shows of the source without going back to Qdrant.
    effective_from: Mapped[date | None] = mapped_column(Date)
    url: Mapped[str | None] = mapped_column(String(1024))
    # Who the document was written for, as it was when cited: decides where the answer may
    # be shown again (thread history, escalation cards). NULL (cited before it was kept)
    # counts as restricted.
    audience: Mapped[str | None] = mapped_column(String(256))

    answer: Mapped[Answer] = relationship(back_populates="citations")

    @classmethod
    def of(cls, source: SourceRef, *, chunk_id: str, score: float, rank: int) -> Citation:
        return cls(
            doc_id=source.doc_id,
            version=source.version,
            title=source.title,
            section=source.section,
            effective_from=source.effective_from,
            url=source.url,
            audience=source.audience,
            chunk_id=chunk_id,
            score=score,
            rank=rank,
        )

    @property
    def cited(self) -> SourceRef | None:
        """The source as it was cited; None for a citation stored before its date was kept."""
        if self.effective_from is None:
            return None
        return SourceRef(
            doc_id=self.doc_id,
            title=self.title or self.doc_id,
            section=self.section or "",
            version=self.version,
            effective_from=self.effective_from,
            url=self.url,
            audience=self.audience,
        )


class Feedback(Base):
    """One vote per user per answer; changing the vote updates the row."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("answer_id", "user_id"),
        CheckConstraint("value IN (1, -1)", "value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(SLACK_ID))
    value: Mapped[int] = mapped_column(SmallInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    # Quick reasons picked in the 👎 modal ("wrong,out_of_date"), countable without parsing text.
    reason_codes: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    answer: Mapped[Answer] = relationship(back_populates="feedback")


class Escalation(Base):
    """A question handed to people; each state change keeps its own timestamp."""

    __tablename__ = "escalations"
    __table_args__ = (Index("ix_escalations_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    trigger: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    status: Mapped[EscalationStatus] = mapped_column(
        _enum_column(EscalationStatus, "status"), default=EscalationStatus.OPEN
    )
    assignee: Mapped[str | None] = mapped_column(String(SLACK_ID))
    resolution: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column()
    resolved_at: Mapped[datetime | None] = mapped_column()
    # Who asked, the question, and the bot's draft answer if it wrote one.
    requested_by: Mapped[str | None] = mapped_column(String(SLACK_ID))
    # Indexed so that deleting messages and answers (retention purge) finds the escalations
    # to update without scanning the table once per deleted row.
    question_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    answer_id: Mapped[int | None] = mapped_column(
        ForeignKey("answers.id", ondelete="SET NULL"), index=True
    )
    # The card in the on-call channel, so claims and reminders update the one people see.
    card_channel: Mapped[str | None] = mapped_column(String(SLACK_ID))
    card_ts: Mapped[str | None] = mapped_column(String(SLACK_ID))
    reminders_sent: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    last_reminded_at: Mapped[datetime | None] = mapped_column()

    conversation: Mapped[Conversation] = relationship(back_populates="escalations")
    question_message: Mapped[Message | None] = relationship(foreign_keys=[question_message_id])
    answer: Mapped[Answer | None] = relationship(foreign_keys=[answer_id])


class VerifiedAnswer(Base):
    """A person's answer, saved when an escalation was resolved, reused for the same question.

    `policy_refs` pins the policy versions in force when it was written ([{doc_id, version,
    title}]): a newer version of any of them makes it stale. `audience`: who may be shown
    it, as for a policy document (a reader needs that audience; `all` is everyone).
    """

    __tablename__ = "verified_answers"
    __table_args__ = (Index("ix_verified_answers_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(SLACK_ID))
    escalation_id: Mapped[int | None] = mapped_column(
        ForeignKey("escalations.id", ondelete="SET NULL"), index=True
    )
    audience: Mapped[str] = mapped_column(String(256))
    policy_refs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[VerifiedAnswerStatus] = mapped_column(
        _enum_column(VerifiedAnswerStatus, "status"), default=VerifiedAnswerStatus.ACTIVE
    )
    # Why it is stale or retired, in words ("Load Approval Thresholds v4 replaced v3").
    status_reason: Mapped[str | None] = mapped_column(Text)
    expires_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reviewed_at: Mapped[datetime | None] = mapped_column()
    reviewed_by: Mapped[str | None] = mapped_column(String(SLACK_ID))
    reuse_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_reused_at: Mapped[datetime | None] = mapped_column()

    escalation: Mapped[Escalation | None] = relationship()


class SlackEvent(Base):
    """Event ids already handled, so Slack's retries never produce a second answer."""

    __tablename__ = "slack_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class JobLock(Base):
    """A lock that one process holds across replicas while it runs a job (store/locks.py).

    The row exists while the lock is held; a holder that died leaves a row whose
    `expires_at` has passed, which the next acquirer takes over.
    """

    __tablename__ = "job_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))
    acquired_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()


class ActivityDaily(Base):
    """Counts per UTC day of the rows `dispatchbot retention purge` deleted.

    Each purge adds what it deletes, so the counts outlive the conversations they describe;
    a day's full activity is these counts plus the rows still in the other tables. Each row
    is counted on the day of its own timestamp (a vote on the day it was cast).
    Conversation-level counts (conversations, questions, escalations) have no adapter and
    sit in the row with adapter ''; answers and votes sit in their adapter's row, where ''
    is the base model. Summing a column over a day's rows gives that day's total.
    """

    __tablename__ = "activity_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    adapter: Mapped[str] = mapped_column(String(128), primary_key=True)
    conversations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    questions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    answers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    thumbs_up: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    thumbs_down: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # All escalations, then one column per known trigger (a new trigger counts in the total).
    escalations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    escalations_button: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    escalations_asked: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    escalations_weak_evidence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    escalations_sensitive: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    escalations_second_downvote: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
