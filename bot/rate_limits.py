"""Per-user and per-channel limits on questions to the model, counted in the store.

The count is of the question rows of the last minute (messages with role `user`), so every
replica sees the same numbers and a restart forgets nothing. It is read before the question
is recorded: two questions arriving at the same moment on two replicas may both pass, so a
burst can exceed a limit by the number of replicas at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select

from bot.incoming import Question
from store.database import Database
from store.models import Conversation, Message, MessageRole
from store.settings import Settings
from store.types import utcnow

WINDOW = timedelta(minutes=1)

Scope = Literal["user", "channel"]


@dataclass(frozen=True)
class RateLimits:
    user_per_minute: int  # 0: no limit
    channel_per_minute: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(settings.rate_limit_user_per_minute, settings.rate_limit_channel_per_minute)


@dataclass(frozen=True)
class LimitReached:
    scope: Scope
    asked: int  # questions in the last minute, this one included

    @property
    def note(self) -> str:
        """What the asker is told, privately."""
        if self.scope == "user":
            said = f"You've asked {self.asked} questions in the last minute"
        else:
            said = f"This channel has asked me {self.asked} questions in the last minute"
        return (
            f":hourglass: {said}; please wait a moment. I've noted your question but not "
            "answered it: send it again in a minute and I will."
        )


def limit_reached(
    database: Database, limits: RateLimits, question: Question, now: datetime | None = None
) -> LimitReached | None:
    """The limit this question would go over, or None when it may be answered."""
    since = (now or utcnow()) - WINDOW
    asked = (Message.role == MessageRole.USER) & (Message.created_at >= since)
    with database.transaction() as session:
        if limits.user_per_minute:
            by_user = session.scalar(
                select(func.count(Message.id)).where(asked, Message.user_id == question.user_id)
            )
            if (by_user or 0) >= limits.user_per_minute:
                return LimitReached("user", (by_user or 0) + 1)
        # A direct message has one asker: the user's limit is the one that matters there.
        if limits.channel_per_minute and not question.is_direct_message:
            in_channel = session.scalar(
                select(func.count(Message.id))
                .join(Conversation, Message.conversation_id == Conversation.id)
                .where(
                    asked,
                    Conversation.team_id == question.team_id,
                    Conversation.channel_id == question.channel_id,
                )
            )
            if (in_channel or 0) >= limits.channel_per_minute:
                return LimitReached("channel", (in_channel or 0) + 1)
    return None
