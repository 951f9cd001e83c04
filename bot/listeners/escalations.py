"""Handing a thread to people: "Ask a person" under an answer, and the on-call card's
Claim and Resolve buttons with the modal that takes the final answer."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack
from slack_sdk import WebClient

from bot.blocks import ASK_PERSON
from bot.escalation import ALREADY_WITH_PEOPLE, Escalations
from bot.escalation_blocks import (
    ESCALATION_CLAIM,
    ESCALATION_RESOLVE,
    RESOLUTION_BLOCK,
    RESOLVE_VIEW,
    parse_resolution,
    resolve_modal,
)
from bot.listeners.actions import ButtonClick
from bot.listeners.registry import Listeners
from bot.notices import Recipient
from bot.services import Services
from store.errors import NotOnRecord
from store.models import Answer, EscalationTrigger

logger = logging.getLogger(__name__)


def register(listeners: Listeners, services: Services) -> None:
    def ask_person(body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        click = ButtonClick.from_body(body, action)
        with services.database.transaction() as session:
            answer = session.get(Answer, click.answer_id)
            if answer is None:
                raise NotOnRecord("that answer is no longer on record")
            conversation_id = answer.message.conversation_id
        escalated = Escalations(client, services).escalate(
            conversation_id,
            trigger=EscalationTrigger.BUTTON,
            asker_id=click.user_id,
            answer_id=click.answer_id,
        )
        if escalated is None:
            Recipient(client, click.user_id, click.channel_id, click.thread_ts).tell(
                ALREADY_WITH_PEOPLE
            )

    def claim(body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        # Someone else's claim, or a resolved escalation, is refused (EscalationStateError)
        # and the clicker told why.
        Escalations(client, services).claim(int(action["value"]), str(body["user"]["id"]))

    def open_resolution(body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        escalation_id = int(action["value"])
        escalations = Escalations(client, services)
        prefill = escalations.prefill_for(escalation_id, str(body["user"]["id"]))
        view = resolve_modal(escalation_id, prefill, escalations.verified_choice(escalation_id))
        client.views_open(trigger_id=body["trigger_id"], view=view)

    def check_resolution(ack: Ack, view: dict[str, Any]) -> None:
        # A modal's errors can only be shown in its ack, before the lazy work starts.
        try:
            parse_resolution(view)
        except ValueError as error:
            ack(response_action="errors", errors={RESOLUTION_BLOCK: str(error)})
            return
        ack()

    def resolve(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        resolution = parse_resolution(view)
        Escalations(client, services).resolve(
            resolution.escalation_id,
            str(body["user"]["id"]),
            resolution.answer,
            resolution.verified,
        )

    listeners.action(ASK_PERSON, ask_person, doing="hand this to a person")
    listeners.action(ESCALATION_CLAIM, claim, doing="claim that question")
    listeners.action(ESCALATION_RESOLVE, open_resolution, doing="open the answer form")
    listeners.view(RESOLVE_VIEW, resolve, doing="save your answer", ack=check_resolution)
