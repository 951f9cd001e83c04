"""Rows the App Home reads, written through the store's own repository functions: model
versions, answers with their votes, escalations. Times are set explicitly, so ages and
feedback days are exact."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from store import repository
from store.models import (
    Answer,
    Escalation,
    EscalationPriority,
    EscalationTrigger,
    Feedback,
    ModelVersion,
    ModelVersionStatus,
)
from store.repository import AnswerRecord

BASE_MODEL = "smollm2-135m-instruct"

_threads = itertools.count(1)
_voters = itertools.count(1)


class Seeder:
    """Writes into the caller's session; `now` is the moment the App Home is built at."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now

    def version(
        self,
        name: str,
        status: ModelVersionStatus,
        *,
        promoted_ago: timedelta | None = None,
        canary_share: float | None = None,
    ) -> ModelVersion:
        version = repository.register_model_version(
            self.session, name=name, base_model=BASE_MODEL, adapter_path=None, dataset_hash=None
        )
        version.status = status
        version.promoted_at = self.now - promoted_ago if promoted_ago is not None else None
        version.canary_share = canary_share
        self.session.flush()
        return version

    def answer(self, adapter: str | None = None, *, model_version_id: int | None = None) -> Answer:
        conversation = repository.find_or_open_conversation(
            self.session,
            team_id="T0DISPATCH",
            channel_id="C0DISPATCH",
            thread_ts=f"1700000000.{next(_threads):06d}",
            user_id="U0ALICE",
        )
        repository.record_user_message(
            self.session, conversation, text="who approves a 30,000 lb load?", user_id="U0ALICE"
        )
        return repository.record_answer(
            self.session,
            conversation,
            AnswerRecord(
                text="The shift lead approves it [1].",
                prompt="SYSTEM ... QUESTION who approves a 30,000 lb load?",
                model=BASE_MODEL,
                adapter=adapter,
                model_version_id=model_version_id,
                endpoint="http://127.0.0.1:8000/v1",
                latency_ms=900,
            ),
        )

    def votes(
        self,
        answer: Answer,
        values: Sequence[int],
        *,
        reasons: Sequence[str] = (),
        ago: timedelta = timedelta(hours=1),
    ) -> list[Feedback]:
        """One vote per value, each by a new user, cast `ago` before now."""
        cast = []
        for value in values:
            feedback = repository.record_feedback(
                self.session,
                answer_id=answer.id,
                user_id=f"U0VOTER{next(_voters)}",
                value=value,
                reason_codes=reasons if value < 0 else (),
            )
            feedback.created_at = feedback.updated_at = self.now - ago
            cast.append(feedback)
        self.session.flush()
        return cast

    def escalation(
        self,
        *,
        trigger: EscalationTrigger,
        priority: EscalationPriority = EscalationPriority.NORMAL,
        ago: timedelta,
        assignee: str | None = None,
        resolved: bool = False,
        channel_id: str = "C0DISPATCH",
        asker: str = "U0ALICE",
    ) -> Escalation:
        conversation = repository.find_or_open_conversation(
            self.session,
            team_id="T0DISPATCH",
            channel_id=channel_id,
            thread_ts=f"1700000000.{next(_threads):06d}",
            user_id=asker,
        )
        escalation, _ = repository.open_escalation(
            self.session, conversation, trigger=trigger, priority=priority, requested_by=asker
        )
        escalation.created_at = self.now - ago
        if assignee is not None:
            repository.claim_escalation(self.session, escalation.id, assignee)
        if resolved:
            repository.resolve_escalation(
                self.session, escalation.id, resolution="Done.", resolved_by=assignee or "U0BOB"
            )
        self.session.flush()
        return escalation
