"""Rows put straight into the store, for tests about what happens to them afterwards."""

from __future__ import annotations

from datetime import datetime

from slack_mock import TEAM_ID, next_ts

from store import repository
from store.database import Database
from store.models import Escalation, EscalationTrigger
from store.repository import AnswerRecord


def seed_answer(
    database: Database,
    *,
    channel: str = "C0DISPATCH",
    adapter: str | None = None,
    asker: str = "U0ALICE",
    question: str = "who approves a 30,000 lb load?",
    drew_on: tuple[str, ...] | None = None,
) -> tuple[int, str]:
    """A question and the bot's answer in a new thread: (answer id, the thread's ts).
    `drew_on`: the audiences of the policies the answer drew on."""
    thread_ts = next_ts()
    with database.transaction() as session:
        conversation = repository.find_or_open_conversation(
            session, team_id=TEAM_ID, channel_id=channel, thread_ts=thread_ts, user_id=asker
        )
        repository.record_user_message(session, conversation, text=question, user_id=asker)
        answer = repository.record_answer(
            session,
            conversation,
            AnswerRecord(
                text="The shift supervisor approves it [1].",
                prompt="(prompt)",
                model="smollm2-135m-instruct",
                adapter=adapter,
                endpoint="http://127.0.0.1:8000/v1",
                latency_ms=900,
                slack_ts=next_ts(),
                source_audiences=drew_on,
            ),
        )
        return answer.id, thread_ts


def seed_escalation(
    database: Database,
    question: str,
    *,
    channel: str = "C0DISPATCH",
    asker: str = "U0ALICE",
    created_at: datetime | None = None,
    trigger: EscalationTrigger = EscalationTrigger.ASKED,
) -> tuple[int, str]:
    """An open escalation of `question` in a new thread: (escalation id, the thread's ts)."""
    thread_ts = next_ts()
    with database.transaction() as session:
        conversation = repository.find_or_open_conversation(
            session, team_id=TEAM_ID, channel_id=channel, thread_ts=thread_ts, user_id=asker
        )
        asked = repository.record_user_message(
            session, conversation, text=question, user_id=asker, slack_ts=thread_ts
        )
        escalation, _ = repository.open_escalation(
            session,
            conversation,
            trigger=trigger,
            requested_by=asker,
            question_message_id=asked.id,
        )
        if created_at is not None:
            session.get_one(Escalation, escalation.id).created_at = created_at
        return escalation.id, thread_ts
