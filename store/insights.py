"""Read-only figures for the admins' App Home: adapters and their 👍 rates, escalations
waiting for people, and the last days of feedback.

Nothing here writes. Every function takes the caller's session, so one App Home reads
one consistent snapshot; the queries use only portable SQL (SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from store.models import (
    Answer,
    Conversation,
    Escalation,
    EscalationStatus,
    Feedback,
    ModelVersion,
    ModelVersionStatus,
)
from store.repository import canary_version, promoted_version

FEEDBACK_DAYS = 7


@dataclass(frozen=True)
class FeedbackTally:
    up: int = 0
    down: int = 0

    @property
    def votes(self) -> int:
        return self.up + self.down

    @property
    def up_rate(self) -> float | None:
        """Share of 👍 among the votes; None when there are none."""
        return self.up / self.votes if self.votes else None


@dataclass(frozen=True)
class AdapterStanding:
    """One model version (or the base model) and what people thought of its answers."""

    name: str | None  # None: the base model without an adapter
    status: str | None  # ModelVersionStatus value; None for the base model
    promoted_at: datetime | None
    canary_share: float | None
    answers: int
    feedback: FeedbackTally


@dataclass(frozen=True)
class AdapterComparison:
    current: AdapterStanding  # the promoted version, or the base model when none is
    # What answered before `current`: for an adapter, the version a rollback returns to
    # (the base model when it was the first promoted); for the base model, the version
    # promoted last, if any.
    previous: AdapterStanding | None
    canary: AdapterStanding | None  # a candidate answering a share of questions


@dataclass(frozen=True)
class WaitingEscalation:
    id: int
    status: str  # "open" or "claimed"
    trigger: str
    priority: str
    assignee: str | None
    requested_by: str | None
    channel_id: str
    created_at: datetime


@dataclass(frozen=True)
class EscalationQueue:
    shown: tuple[WaitingEscalation, ...]  # high priority first, then the oldest first
    total: int  # all open and claimed escalations, shown or not


@dataclass(frozen=True)
class DayOfFeedback:
    day: date
    feedback: FeedbackTally


@dataclass(frozen=True)
class RecentFeedback:
    days: tuple[DayOfFeedback, ...]  # every day of the window, oldest first, empty days too
    top_reasons: tuple[tuple[str, int], ...]  # 👎 reason codes, most picked first

    @property
    def total(self) -> FeedbackTally:
        return FeedbackTally(
            up=sum(day.feedback.up for day in self.days),
            down=sum(day.feedback.down for day in self.days),
        )


@dataclass(frozen=True)
class StoreInsights:
    adapters: AdapterComparison
    escalations: EscalationQueue
    feedback: RecentFeedback


def store_insights(
    session: Session, *, now: datetime, escalation_limit: int, days: int = FEEDBACK_DAYS
) -> StoreInsights:
    """Everything the admin App Home shows from the store, read in the caller's session."""
    return StoreInsights(
        adapters=adapter_comparison(session),
        escalations=waiting_escalations(session, limit=escalation_limit),
        feedback=recent_feedback(session, now=now, days=days),
    )


def adapter_comparison(session: Session) -> AdapterComparison:
    """The answering version against the one before it, as serving/promotion.py defines them."""
    promoted = promoted_version(session)
    canary = canary_version(session)
    if promoted is None:
        last_promoted = session.scalars(
            select(ModelVersion)
            .where(ModelVersion.promoted_at.is_not(None))
            .order_by(ModelVersion.promoted_at.desc())
        ).first()
        current = _base_model_standing(session)
        previous = _version_standing(session, last_promoted) if last_promoted else None
    else:
        # The version `rollback` would bring back; without one, the base model answers again.
        rollback_target = session.scalars(
            select(ModelVersion)
            .where(
                ModelVersion.status == ModelVersionStatus.RETIRED,
                ModelVersion.promoted_at.is_not(None),
                ModelVersion.id != promoted.id,
            )
            .order_by(ModelVersion.promoted_at.desc())
        ).first()
        current = _version_standing(session, promoted)
        previous = (
            _version_standing(session, rollback_target)
            if rollback_target
            else _base_model_standing(session)
        )
    return AdapterComparison(
        current=current,
        previous=previous,
        canary=_version_standing(session, canary) if canary else None,
    )


def waiting_escalations(session: Session, *, limit: int) -> EscalationQueue:
    """Open and claimed escalations, the most pressing `limit` of them, and how many in all."""
    waiting = Escalation.status.in_([EscalationStatus.OPEN, EscalationStatus.CLAIMED])
    total = session.scalar(select(func.count(Escalation.id)).where(waiting)) or 0
    high_first = case((Escalation.priority == "high", 0), else_=1)
    rows = session.execute(
        select(Escalation, Conversation.channel_id)
        .join(Conversation, Escalation.conversation_id == Conversation.id)
        .where(waiting)
        .order_by(high_first, Escalation.created_at, Escalation.id)
        .limit(limit)
    ).all()
    return EscalationQueue(
        shown=tuple(
            WaitingEscalation(
                id=escalation.id,
                status=escalation.status.value,
                trigger=escalation.trigger,
                priority=escalation.priority,
                assignee=escalation.assignee,
                requested_by=escalation.requested_by,
                channel_id=channel_id,
                created_at=escalation.created_at,
            )
            for escalation, channel_id in rows
        ),
        total=total,
    )


def recent_feedback(
    session: Session, *, now: datetime, days: int = FEEDBACK_DAYS
) -> RecentFeedback:
    """Votes per calendar day (in `now`'s time zone) over the last `days` days, today included.

    A vote counts on the day it was last cast or changed (`updated_at`), with its current
    value. Days are counted here rather than in SQL: date functions differ between SQLite and
    PostgreSQL, and a week of votes is small.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware, like datetime.now(UTC).astimezone()")
    if days < 1:
        raise ValueError(f"days must be 1 or more, got {days}")
    first_day = now.date() - timedelta(days=days - 1)
    since = datetime.combine(first_day, time(), tzinfo=now.tzinfo)
    rows = session.execute(
        select(Feedback.value, Feedback.reason_codes, Feedback.updated_at).where(
            Feedback.updated_at >= since, Feedback.updated_at <= now
        )
    ).all()
    ups: Counter[date] = Counter()
    downs: Counter[date] = Counter()
    reasons: Counter[str] = Counter()
    for value, reason_codes, updated_at in rows:
        day = updated_at.astimezone(now.tzinfo).date()
        if value > 0:
            ups[day] += 1
        else:
            downs[day] += 1
            reasons.update(code for code in (reason_codes or "").split(",") if code)
    window = [first_day + timedelta(days=offset) for offset in range(days)]
    return RecentFeedback(
        days=tuple(DayOfFeedback(day, FeedbackTally(ups[day], downs[day])) for day in window),
        top_reasons=tuple(sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
    )


def _version_standing(session: Session, version: ModelVersion) -> AdapterStanding:
    # Answers name their adapter; model_version_id links them when the writer knew the row.
    answered_by = or_(
        Answer.model_version_id == version.id,
        and_(Answer.model_version_id.is_(None), Answer.adapter == version.name),
    )
    answers, feedback = _answers_and_feedback(session, answered_by)
    return AdapterStanding(
        name=version.name,
        status=version.status.value,
        promoted_at=version.promoted_at,
        canary_share=version.canary_share,
        answers=answers,
        feedback=feedback,
    )


def _base_model_standing(session: Session) -> AdapterStanding:
    answered_by = and_(Answer.model_version_id.is_(None), Answer.adapter.is_(None))
    answers, feedback = _answers_and_feedback(session, answered_by)
    return AdapterStanding(
        name=None,
        status=None,
        promoted_at=None,
        canary_share=None,
        answers=answers,
        feedback=feedback,
    )


def _answers_and_feedback(
    session: Session, answered_by: ColumnElement[bool]
) -> tuple[int, FeedbackTally]:
    answers = session.scalar(select(func.count(Answer.id)).where(answered_by)) or 0
    counts: dict[int, int] = {
        value: count
        for value, count in session.execute(
            select(Feedback.value, func.count(Feedback.id))
            .join(Answer, Feedback.answer_id == Answer.id)
            .where(answered_by)
            .group_by(Feedback.value)
        )
    }
    return answers, FeedbackTally(up=counts.get(1, 0), down=counts.get(-1, 0))
