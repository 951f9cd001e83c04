"""Retention: delete conversations past a window, keeping their counts per day.

A conversation goes once nothing has happened in it since the cutoff: it started before the
cutoff and has no message since. One with an escalation that is open or claimed stays, since
a person still owes an answer there. Deleting a conversation deletes its messages, answers,
citations, feedback and escalations through the foreign keys' ON DELETE CASCADE; before
that, the rows' counts are added to `activity_daily`, in the same transaction, so the counts
survive and no row is ever counted twice. Model versions are never touched.

Work goes in batches of conversations, each its own short transaction, so a large purge never
holds a long lock on tables the bot is writing to.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import (
    Date,
    Table,
    and_,
    cast,
    delete,
    exists,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql import ColumnElement

from store.database import Database, changed_rows
from store.models import (
    ActivityDaily,
    Answer,
    Citation,
    Conversation,
    Escalation,
    EscalationStatus,
    EscalationTrigger,
    Feedback,
    Message,
    MessageRole,
    SlackEvent,
)

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
NO_ADAPTER = ""  # activity_daily's key for the base model and for conversation-level counts
# Triggers with their own activity_daily column; any other counts only in the total.
_TRIGGERS = frozenset(trigger.value for trigger in EscalationTrigger)

ActivityKey = tuple[date, str]  # (UTC day, adapter)
OnBatch = Callable[[int], None]


@dataclass(frozen=True)
class PurgeReport:
    """What a purge removed (in a dry run: would remove), and what it kept on purpose."""

    cutoff: datetime
    dry_run: bool
    conversations: int
    messages: int
    answers: int
    citations: int
    feedback: int
    escalations: int
    slack_events: int
    # Conversations past the cutoff kept because an escalation in them is open or claimed.
    kept_unresolved: int
    # UTC days whose counts in activity_daily grew (would grow).
    days: int

    def removed(self) -> dict[str, int]:
        """Rows per table, in the order the tables hang together."""
        return {
            "conversations": self.conversations,
            "messages": self.messages,
            "answers": self.answers,
            "citations": self.citations,
            "feedback": self.feedback,
            "escalations": self.escalations,
            "slack_events": self.slack_events,
        }


@dataclass
class _Tally:
    """Counts of one batch, or of all batches so far."""

    activity: dict[ActivityKey, Counter[str]] = field(default_factory=dict)
    messages: int = 0
    citations: int = 0

    def add(self, other: _Tally) -> None:
        for key, counts in other.activity.items():
            self.activity.setdefault(key, Counter()).update(counts)
        self.messages += other.messages
        self.citations += other.citations

    def total(self, column: str) -> int:
        return sum(counts[column] for counts in self.activity.values())


def purge_older_than(
    database: Database,
    cutoff: datetime,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: OnBatch | None = None,
) -> PurgeReport:
    """Delete conversations with no activity since `cutoff`, and Slack event ids older than it.

    `on_batch` is called after each batch with the number of conversations handled so far.
    A dry run reads the same batches and writes nothing.
    """
    if cutoff.tzinfo is None:
        raise ValueError("the cutoff must be timezone-aware; use datetime.now(UTC) - window")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    with database.transaction() as session:
        kept_unresolved = session.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(_inactive_since(cutoff), _has_unresolved_escalation())
        )
    tally = _purge_conversations(database, cutoff, dry_run, batch_size, on_batch)
    slack_events = _purge_slack_events(database, cutoff, dry_run, batch_size)

    report = PurgeReport(
        cutoff=cutoff,
        dry_run=dry_run,
        conversations=tally.total("conversations"),
        messages=tally.messages,
        answers=tally.total("answers"),
        citations=tally.citations,
        feedback=tally.total("thumbs_up") + tally.total("thumbs_down"),
        escalations=tally.total("escalations"),
        slack_events=slack_events,
        kept_unresolved=kept_unresolved or 0,
        days=len({day for day, _ in tally.activity}),
    )
    logger.info(
        "retention purge%s before %s: %s; kept %d with unresolved escalations",
        " (dry run)" if dry_run else "",
        cutoff.isoformat(),
        ", ".join(f"{count} {table}" for table, count in report.removed().items()),
        report.kept_unresolved,
    )
    return report


def _purge_conversations(
    database: Database, cutoff: datetime, dry_run: bool, batch_size: int, on_batch: OnBatch | None
) -> _Tally:
    tally = _Tally()
    after_id = 0  # keyset paging: kept and skipped conversations are not read again
    while True:
        with database.transaction() as session:
            if not dry_run:
                _lock_for_writing(session)
            ids = _purgeable_ids(session, cutoff, after_id, batch_size, lock=not dry_run)
            if not ids:
                break
            batch = _count_rows(session, ids)
            if not dry_run:
                _add_to_daily_activity(session, batch.activity)
                session.execute(
                    delete(Conversation)
                    .where(Conversation.id.in_(ids))
                    .execution_options(synchronize_session=False)
                )
        tally.add(batch)
        after_id = ids[-1]
        if on_batch is not None:
            on_batch(tally.total("conversations"))
    return tally


def _lock_for_writing(session: Session) -> None:
    # pysqlite opens its transaction only at the first write, so the reads that choose and
    # count the rows would run before it and could see a state that another purge changes
    # before this one deletes: counts could be added twice. BEGIN IMMEDIATE takes SQLite's
    # one write lock first. PostgreSQL locks the chosen rows instead (_purgeable_ids).
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def _inactive_since(cutoff: datetime) -> ColumnElement[bool]:
    # Same as "latest message, or the start if none, is before the cutoff", and it uses
    # the (conversation_id, created_at) index instead of computing a maximum per thread.
    message_since = exists().where(
        Message.conversation_id == Conversation.id, Message.created_at >= cutoff
    )
    return and_(Conversation.started_at < cutoff, ~message_since)


def _has_unresolved_escalation() -> ColumnElement[bool]:
    return exists().where(
        Escalation.conversation_id == Conversation.id,
        Escalation.status != EscalationStatus.RESOLVED,
    )


def _purgeable_ids(
    session: Session, cutoff: datetime, after_id: int, batch_size: int, *, lock: bool
) -> list[int]:
    query = (
        select(Conversation.id)
        .where(
            Conversation.id > after_id,
            _inactive_since(cutoff),
            ~_has_unresolved_escalation(),
        )
        .order_by(Conversation.id)
        .limit(batch_size)
    )
    if lock:
        # PostgreSQL: rows another purge holds are skipped, not counted twice; so is a
        # thread the bot is writing to right now (its insert holds a key-share lock).
        query = query.with_for_update(skip_locked=True, of=Conversation)
    return list(session.scalars(query))


def _count_rows(session: Session, ids: Sequence[int]) -> _Tally:
    """The batch's rows by UTC day (and adapter, for answers and votes)."""
    tally = _Tally()

    def add(key: ActivityKey, column: str, count: int) -> None:
        tally.activity.setdefault(key, Counter())[column] += count

    in_batch = Message.conversation_id.in_(ids)
    started = _utc_day(session, Conversation.started_at)
    for day, count in session.execute(
        select(started, func.count()).where(Conversation.id.in_(ids)).group_by(started)
    ):
        add((day, NO_ADAPTER), "conversations", count)

    asked = _utc_day(session, Message.created_at)
    for day, count in session.execute(
        select(asked, func.count())
        .where(in_batch, Message.role == MessageRole.USER)
        .group_by(asked)
    ):
        add((day, NO_ADAPTER), "questions", count)

    answered = _utc_day(session, Answer.created_at)
    for day, adapter, count in session.execute(
        select(answered, Answer.adapter, func.count())
        .join(Message, Answer.message_id == Message.id)
        .where(in_batch)
        .group_by(answered, Answer.adapter)
    ):
        add((day, adapter or NO_ADAPTER), "answers", count)

    voted = _utc_day(session, Feedback.created_at)
    for day, adapter, value, count in session.execute(
        select(voted, Answer.adapter, Feedback.value, func.count())
        .join(Answer, Feedback.answer_id == Answer.id)
        .join(Message, Answer.message_id == Message.id)
        .where(in_batch)
        .group_by(voted, Answer.adapter, Feedback.value)
    ):
        add((day, adapter or NO_ADAPTER), "thumbs_up" if value > 0 else "thumbs_down", count)

    escalated = _utc_day(session, Escalation.created_at)
    for day, trigger, count in session.execute(
        select(escalated, Escalation.trigger, func.count())
        .where(Escalation.conversation_id.in_(ids))
        .group_by(escalated, Escalation.trigger)
    ):
        add((day, NO_ADAPTER), "escalations", count)
        if trigger in _TRIGGERS:
            add((day, NO_ADAPTER), f"escalations_{trigger}", count)

    tally.messages = session.scalar(select(func.count()).select_from(Message).where(in_batch)) or 0
    tally.citations = (
        session.scalar(
            select(func.count(Citation.id))
            .join(Answer, Citation.answer_id == Answer.id)
            .join(Message, Answer.message_id == Message.id)
            .where(in_batch)
        )
        or 0
    )
    return tally


def _utc_day(session: Session, column: InstrumentedAttribute[datetime]) -> ColumnElement[date]:
    """The UTC calendar day of a timestamp column, computed by the database."""
    if session.get_bind().dialect.name == "postgresql":
        # A literal, not a bound parameter: GROUP BY must repeat the SELECT expression exactly.
        return cast(func.timezone(literal_column("'UTC'"), column), Date)
    # SQLite keeps UTCDateTime values as UTC text, whose date part date() reads.
    return func.date(column, type_=Date)


def _add_to_daily_activity(session: Session, activity: dict[ActivityKey, Counter[str]]) -> None:
    """Add the batch's counts to activity_daily: insert the day's row or add to it."""
    table = ActivityDaily.__table__
    # A declarative model's __table__ is typed as any FromClause; a mapped class has a Table.
    assert isinstance(table, Table)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    # Keys in one order, so two purges adding to the same days never deadlock.
    for (day, adapter), counts in sorted(activity.items()):
        statement = insert(table).values(day=day, adapter=adapter, **counts)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[table.c.day, table.c.adapter],
                set_={column: table.c[column] + statement.excluded[column] for column in counts},
            )
        )


def _purge_slack_events(
    database: Database, cutoff: datetime, dry_run: bool, batch_size: int
) -> int:
    """Delete dedupe ids older than the cutoff; Slack retries an event for minutes, not days."""
    old = SlackEvent.received_at < cutoff
    if dry_run:
        with database.transaction() as session:
            return session.scalar(select(func.count()).select_from(SlackEvent).where(old)) or 0
    deleted = 0
    while True:
        with database.transaction() as session:
            batch = select(SlackEvent.event_id).where(old).limit(batch_size)
            result = session.execute(
                delete(SlackEvent)
                .where(SlackEvent.event_id.in_(batch.scalar_subquery()))
                .execution_options(synchronize_session=False)
            )
        count = changed_rows(result)
        if count == 0:
            return deleted
        deleted += count
