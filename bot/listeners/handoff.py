""" "Ask a person": hand the thread to the dispatch team."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks import ASK_PERSON
from bot.listeners.actions import ButtonClick
from bot.services import Services
from store import repository
from store.models import Answer

logger = logging.getLogger(__name__)

HANDED_OVER = (
    "<@{user}> asked for a person. I've passed this thread to the dispatch team; "
    "someone will reply here."
)
ALREADY_WITH_PEOPLE = "A person has already been asked to help in this thread."
BUTTON_TRIGGER = "button"


def register(app: App, services: Services, ack: Callable[..., None]) -> None:
    def ask_person(body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        click = ButtonClick.from_body(body, action)
        with services.database.transaction() as session:
            answer = session.get(Answer, click.answer_id)
            if answer is None:
                raise LookupError(f"answer {click.answer_id} is not on record")
            escalation, is_new = repository.open_escalation(
                session, answer.message.conversation, trigger=BUTTON_TRIGGER
            )
            escalation_id = escalation.id
        if not is_new:
            client.chat_postEphemeral(
                channel=click.channel_id,
                user=click.user_id,
                thread_ts=click.thread_ts,
                text=ALREADY_WITH_PEOPLE,
            )
            return
        client.chat_postMessage(
            channel=click.channel_id,
            thread_ts=click.thread_ts,
            text=HANDED_OVER.format(user=click.user_id),
        )
        _notify_team(client, services, click, escalation_id)

    app.action(ASK_PERSON)(ack=ack, lazy=[ask_person])


def _notify_team(
    client: WebClient, services: Services, click: ButtonClick, escalation_id: int
) -> None:
    channel = services.settings.escalation_channel
    if not channel:
        logger.warning(
            "escalation %d is not posted anywhere: ESCALATION_CHANNEL is not set", escalation_id
        )
        return
    try:
        link = client.chat_getPermalink(channel=click.channel_id, message_ts=click.thread_ts)
        where = f"<{link['permalink']}|this thread>"
    except SlackApiError:
        where = f"a thread in <#{click.channel_id}>"
    client.chat_postMessage(
        channel=channel,
        text=f"<@{click.user_id}> needs a person in {where} (escalation {escalation_id}).",
    )
