"""👍 / 👎 on an answer, and the "what was wrong?" modal that a 👎 opens."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from bot import metrics
from bot.blocks import (
    FEEDBACK,
    FEEDBACK_DOWN,
    FEEDBACK_REASON_VIEW,
    FEEDBACK_UP,
    feedback_ack_text,
    feedback_reason_modal,
    parse_feedback_reason,
    parse_feedback_value,
    reason_ack_text,
)
from bot.escalation import Escalations
from bot.listeners.actions import ButtonClick
from bot.listeners.registry import Listeners
from bot.middleware import REQUEST_ID
from bot.notices import Recipient
from bot.services import Services
from store import repository
from store.errors import NotOnRecord
from store.models import Answer, EscalationTrigger

logger = logging.getLogger(__name__)

REPEATED_DOWNVOTES = 2

GONE = "That answer is no longer on record, so the vote was not counted."
NOT_SAVED = (
    "Sorry, I couldn't save that just now (reference `{reference}`). Please try again in a minute."
)


def register(listeners: Listeners, services: Services) -> None:
    def vote(
        body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext
    ) -> None:
        """Slack's feedback buttons carry the vote in the clicked button's value; the ordinary
        👍/👎 buttons of answers posted before them, in their action id."""
        if action.get("action_id") == FEEDBACK:
            value, answer_id = parse_feedback_value(action.get("value"))
            click = ButtonClick.from_body(body, {**action, "value": answer_id})
        else:
            value = 1 if action.get("action_id") == FEEDBACK_UP else -1
            click = ButtonClick.from_body(body, action)
        if value > 0:
            _vote_up(click, client, context)
        else:
            _vote_down(click, client, context)

    def _vote_up(click: ButtonClick, client: WebClient, context: BoltContext) -> None:
        asker = _asker(client, click)
        if _store_vote(services, asker, context, click.answer_id, value=1):
            asker.tell(feedback_ack_text(1))

    def _vote_down(click: ButtonClick, client: WebClient, context: BoltContext) -> None:
        # The vote first, so that it counts whatever happens to the modal; storing takes
        # milliseconds of the 3 s the click's trigger_id lasts.
        asker = _asker(client, click)
        if not _store_vote(services, asker, context, click.answer_id, value=-1):
            return
        try:
            if click.trigger_id:
                client.views_open(
                    trigger_id=click.trigger_id,
                    view=feedback_reason_modal(click.answer_id, click.channel_id, click.thread_ts),
                )
        finally:  # a modal that did not open (expired trigger) still leaves the vote at work
            _escalate_repeated_downvotes(services, client, click)

    def store_reason(
        body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
    ) -> None:
        reason = parse_feedback_reason(view)
        asker = Recipient(client, str(body["user"]["id"]), reason.channel_id, reason.thread_ts)
        stored = _store_vote(
            services,
            asker,
            context,
            reason.answer_id,
            value=-1,
            reason=reason.note,
            reason_codes=reason.reasons,
        )
        if stored:
            asker.tell(reason_ack_text(reason))

    for action_id in (FEEDBACK, FEEDBACK_UP, FEEDBACK_DOWN):
        listeners.action(action_id, vote, doing="count your vote")
    listeners.view(FEEDBACK_REASON_VIEW, store_reason, doing="save what was wrong")


def _escalate_repeated_downvotes(services: Services, client: WebClient, click: ButtonClick) -> None:
    """A second 👎 in one thread means the bot is not helping there: bring in a person."""
    with services.database.transaction() as session:
        conversation_id = session.get_one(Answer, click.answer_id).message.conversation_id
        downvotes = repository.downvotes_in_thread(session, conversation_id)
    if downvotes >= REPEATED_DOWNVOTES:
        Escalations(client, services).escalate(
            conversation_id,
            trigger=EscalationTrigger.SECOND_DOWNVOTE,
            asker_id=click.user_id,
            answer_id=click.answer_id,
        )


def _asker(client: WebClient, click: ButtonClick) -> Recipient:
    """Notes about a vote go to the voter only, in the answer's thread."""
    return Recipient(client, click.user_id, click.channel_id, click.thread_ts)


def _store_vote(
    services: Services,
    asker: Recipient,
    context: BoltContext,
    answer_id: int,
    *,
    value: int,
    reason: str | None = None,
    reason_codes: Sequence[str] = (),
) -> bool:
    """Record the vote; on failure tell the user why, and return False."""
    try:
        with services.database.transaction() as session:
            feedback = repository.record_feedback(
                session,
                answer_id=answer_id,
                user_id=asker.user_id,
                value=value,
                reason=reason,
                reason_codes=reason_codes,
            )
            adapter = feedback.answer.adapter
    except NotOnRecord:
        asker.tell(GONE)
        return False
    except SQLAlchemyError:
        reference = str(context.get(REQUEST_ID))
        logger.exception("could not store feedback request=%s", reference)
        asker.tell(NOT_SAVED.format(reference=reference))
        return False
    metrics.count_feedback(value, adapter)
    logger.info("feedback answer=%d value=%d reasons=%s", answer_id, value, ",".join(reason_codes))
    return True
