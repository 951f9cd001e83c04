"""The questions a workspace asks most: what the Messages tab offers people to ask.

A question counts once per person who asked it (same words, ignoring case, spacing and end
punctuation), and only when the bot answered it from policy: not escalated for weak
evidence, not withheld. Each carries the audiences its answer drew on, so a reader is
offered only what they may see.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from store.models import Answer, Conversation, Message, MessageRole

MAX_QUESTION_LENGTH = 150  # a suggested prompt is a line on a button, not a paragraph
# How many of the latest answers are read: enough for a month of a busy workspace.
SCANNED_ANSWERS = 5_000
_END_PUNCTUATION = re.compile(r"[\s?!.]+$")


@dataclass(frozen=True)
class AskedQuestion:
    text: str  # the first wording seen
    askers: int  # different people who asked it
    last_asked: datetime


def most_asked(
    session: Session,
    *,
    team_id: str,
    since: datetime,
    audiences: Collection[str],
    min_askers: int = 2,
    limit: int = 4,
) -> list[AskedQuestion]:
    """The questions asked by at least `min_askers` people since `since` whose answers drew
    only on `audiences`, most askers first."""
    asked = aliased(Message)
    reply = aliased(Message)
    question_of_reply = (
        select(func.max(Message.id))
        .where(
            Message.conversation_id == reply.conversation_id,
            Message.role == MessageRole.USER,
            Message.id < reply.id,
        )
        .correlate(reply)
        .scalar_subquery()
    )
    rows = session.execute(
        select(asked.text, asked.user_id, asked.created_at, Answer.source_audiences)
        .join(reply, Answer.message_id == reply.id)
        .join(Conversation, reply.conversation_id == Conversation.id)
        .join(asked, asked.id == question_of_reply)
        .where(
            Conversation.team_id == team_id,
            Answer.created_at >= since,
            Answer.needs_human.is_(False),
        )
        .order_by(Answer.id.desc())
        .limit(SCANNED_ANSWERS)
    ).all()
    readable = set(audiences)
    wordings: dict[str, str] = {}
    askers: dict[str, set[str]] = {}
    last: dict[str, datetime] = {}
    for text, user_id, created_at, drew_on in rows:
        if drew_on is None or not set(drew_on) <= readable or len(text) > MAX_QUESTION_LENGTH:
            continue  # unknown sources count as restricted
        key = _normalized(text)
        if not key:
            continue
        wordings.setdefault(key, text.strip())
        askers.setdefault(key, set()).add(user_id or "")
        last[key] = max(last.get(key, created_at), created_at)
    found = [
        AskedQuestion(wordings[key], len(people), last[key])
        for key, people in askers.items()
        if len(people) >= min_askers
    ]
    found.sort(key=lambda question: (-question.askers, -question.last_asked.timestamp()))
    return found[:limit]


def _normalized(text: str) -> str:
    return _END_PUNCTUATION.sub("", " ".join(text.casefold().split()))
