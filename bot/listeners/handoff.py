"""Handing a thread to people: "Ask a person" under an answer, and the on-call card's
Claim and Resolve buttons with the modal that takes the final answer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.blocks import ASK_PERSON
from bot.escalation import ALREADY_WITH_PEOPLE, Handoff
from bot.escalation_blocks import (
    ESCALATION_CLAIM,
    ESCALATION_RESOLVE,
    RESOLUTION_BLOCK,
    RESOLVE_VIEW,
    parse_resolution,
    resolve_modal,
)
from bot.listeners.actions import ButtonClick
from bot.services import Services
from store.models import Answer, EscalationTrigger
from store.repository import EscalationStateError

logger = logging.getLogger(__name__)


def register(app: App, services: Services, ack: Callable[..., None]) -> None:
    def ask_person(body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        click = ButtonClick.from_body(body, action)
        with services.database.transaction() as session:
            answer = session.get(Answer, click.answer_id)
            if answer is None:
                raise LookupError(f"answer {click.answer_id} is not on record")
            conversation_id = answer.message.conversation_id
        escalated = Handoff(client, services).escalate(
            conversation_id,
            trigger=EscalationTrigger.BUTTON,
            asker_id=click.user_id,
            answer_id=click.answer_id,
        )
        if escalated is None:
            client.chat_postEphemeral(
                channel=click.channel_id,
                user=click.user_id,
                thread_ts=click.thread_ts,
                text=ALREADY_WITH_PEOPLE,
            )

    def claim(body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        user_id = str(body["user"]["id"])
        try:
            Handoff(client, services).claim(int(action["value"]), user_id)
        except EscalationStateError as refusal:
            client.chat_postEphemeral(
                channel=str(body["channel"]["id"]),
                user=user_id,
                text=f"You can't claim this one: {refusal}.",
            )

    def open_resolution(body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        escalation_id = int(action["value"])
        handoff = Handoff(client, services)
        prefill = handoff.prefill_for(escalation_id, str(body["user"]["id"]))
        view = resolve_modal(escalation_id, prefill, handoff.verified_choice(escalation_id))
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
        user_id = str(body["user"]["id"])
        try:
            Handoff(client, services).resolve(
                resolution.escalation_id, user_id, resolution.answer, resolution.verified
            )
        except EscalationStateError as refusal:
            logger.info(
                "resolution of escalation %d refused: %s", resolution.escalation_id, refusal
            )

    app.action(ASK_PERSON)(ack=ack, lazy=[ask_person])
    app.action(ESCALATION_CLAIM)(ack=ack, lazy=[claim])
    app.action(ESCALATION_RESOLVE)(ack=ack, lazy=[open_resolution])
    app.view(RESOLVE_VIEW)(ack=check_resolution, lazy=[resolve])
