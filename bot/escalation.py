"""The Slack side of an escalation to people: the thread notice, the on-call card, claims,
resolutions and reminders. Every state change is written to the store first; Slack shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from bot import metrics
from bot.blocks import SlackMessage
from bot.escalation_blocks import (
    EscalationCard,
    VerifiedChoice,
    VerifiedDraft,
    claimed_notice,
    escalation_card,
    escalation_notice,
    moved_card_notice,
    resolution_post,
)
from bot.services import Services
from bot.verified import entry_of
from retrieval.documents import DEFAULT_AUDIENCE
from retrieval.verified import VerifiedEntry, index_verified
from store import repository, verified_answers
from store.errors import Unavailable
from store.models import (
    Answer,
    Conversation,
    Escalation,
    EscalationPriority,
    EscalationStatus,
    EscalationTrigger,
    Message,
    MessageRole,
)
from store.verified_answers import PolicyRef

logger = logging.getLogger(__name__)

MAX_REMINDERS = 2  # the first re-posts the card louder; the second pings the fallback group
ALREADY_WITH_PEOPLE = "A person has already been asked to help in this thread."
DRAFT_HIDDEN = (
    "_Draft hidden: it draws on a restricted policy that this channel may not see. "
    "Read it in the thread._"
)


def mention_syntax(ids: list[str]) -> str:
    """Slack mention markup for user group ids (S…), user ids (U…, W…), `here` or `channel`."""
    mentions = []
    for raw in ids:
        target = raw.strip()
        if target.startswith("S"):
            mentions.append(f"<!subteam^{target}>")
        elif target.startswith(("U", "W")):
            mentions.append(f"<@{target}>")
        elif target in ("here", "channel"):
            mentions.append(f"<!{target}>")
    return " ".join(mentions)


class Escalations:
    """Escalations for one Slack workspace: one instance per call, cheap to build."""

    def __init__(self, client: WebClient, services: Services) -> None:
        self._client = client
        self._services = services
        self._settings = services.settings

    def escalate(
        self,
        conversation_id: int,
        *,
        trigger: EscalationTrigger,
        asker_id: str,
        priority: EscalationPriority = EscalationPriority.NORMAL,
        question_message_id: int | None = None,
        answer_id: int | None = None,
        tell_thread: bool = True,
    ) -> int | None:
        """Open an escalation, tell the thread, post the card; None if one was open already."""
        with self._services.database.transaction() as session:
            conversation = session.get_one(Conversation, conversation_id)
            escalation, is_new = repository.open_escalation(
                session,
                conversation,
                trigger=trigger,
                priority=priority,
                requested_by=asker_id,
                question_message_id=question_message_id,
                answer_id=answer_id,
            )
            escalation_id = escalation.id
            channel_id, thread_ts = conversation.channel_id, conversation.thread_ts
        if not is_new:
            return None
        metrics.count_escalation(trigger.value, EscalationStatus.OPEN)
        logger.info(
            "escalation=%d trigger=%s priority=%s", escalation_id, trigger.value, priority.value
        )
        steps: list[SlackStep] = []
        if tell_thread:
            steps.append(
                SlackStep(
                    "tell the thread",
                    lambda: self.tell_thread_help_is_coming(
                        channel_id, thread_ts, asker_id, priority
                    ),
                )
            )
        steps.append(SlackStep("post the card", lambda: self._post_card(escalation_id)))
        deliver(steps, f"escalation {escalation_id}")
        return escalation_id

    def tell_thread_help_is_coming(
        self, channel_id: str, thread_ts: str, asker_id: str, priority: EscalationPriority
    ) -> None:
        sensitive = priority is EscalationPriority.HIGH
        self._client.chat_postMessage(
            channel=channel_id,
            thread_ts=thread_ts,
            text=escalation_notice(
                asker_id,
                safety_note=self._settings.escalation_safety_note if sensitive else None,
                priority=priority.value,
            ),
        )

    def claim(self, escalation_id: int, assignee: str) -> None:
        """Raises EscalationStateError when someone else holds it or it is resolved."""
        with self._services.database.transaction() as session:
            escalation, newly = repository.claim_escalation(session, escalation_id, assignee)
            channel_id = escalation.conversation.channel_id
            thread_ts = escalation.conversation.thread_ts
            trigger = escalation.trigger
        steps: list[SlackStep] = []
        if newly:
            metrics.count_escalation(trigger, EscalationStatus.CLAIMED)
            steps.append(
                SlackStep(
                    "tell the thread",
                    lambda: self._client.chat_postMessage(
                        channel=channel_id, thread_ts=thread_ts, text=claimed_notice(assignee)
                    ),
                )
            )
        steps.append(SlackStep("update the card", lambda: self._update_card(escalation_id)))
        deliver(steps, f"claim of escalation {escalation_id}")

    def prefill_for(self, escalation_id: int, user_id: str) -> str | None:
        """The resolver's (or the assignee's) last reply in the thread, to start the answer."""
        with self._services.database.transaction() as session:
            escalation = session.get_one(Escalation, escalation_id)
            for author in dict.fromkeys(filter(None, (user_id, escalation.assignee))):
                reply = repository.last_reply_by(session, escalation.conversation_id, author)
                if reply is not None:
                    return reply.text
        return None

    def verified_choice(self, escalation_id: int) -> VerifiedChoice:
        """What the resolve modal offers: the asker's question, and who may see the answer."""
        access = self._services.access
        with self._services.database.transaction() as session:
            escalation = session.get_one(Escalation, escalation_id)
            question = asked(escalation)
            drew_on = set((escalation.answer.source_audiences or []) if escalation.answer else [])
            channel = access.channel_audiences(escalation.conversation.channel_id)
            sensitive = escalation.trigger == EscalationTrigger.SENSITIVE.value
            question_text = question.text if question else ""
        return VerifiedChoice(
            question=question_text,
            audiences=tuple(sorted(access.known_audiences())),
            audience=narrowest_audience(drew_on, channel, access.everywhere),
            save_by_default=not sensitive,
        )

    def resolve(
        self,
        escalation_id: int,
        resolved_by: str,
        resolution: str,
        verified: VerifiedDraft | None = None,
    ) -> None:
        """Store the answer (and the verified answer asked for), post it in the thread unless
        it is there, give the thread back, then make the verified answer searchable."""
        saved: VerifiedEntry | None = None
        with self._services.database.transaction() as session:
            escalation = repository.resolve_escalation(
                session, escalation_id, resolution=resolution, resolved_by=resolved_by
            )
            if verified is not None:
                saved = _save_verified(session, escalation, resolution, resolved_by, verified)
            conversation = escalation.conversation
            already_said = _normalized(resolution) in {
                _normalized(message.text)
                for message in conversation.messages
                if message.role is MessageRole.HUMAN
            }
            assignee = escalation.assignee or resolved_by
            channel_id, thread_ts = conversation.channel_id, conversation.thread_ts
            conversation_id = conversation.id
            trigger = escalation.trigger
        metrics.count_escalation(trigger, EscalationStatus.RESOLVED)
        if saved is not None:  # searchable before Slack hears of it: Slack may fail
            search = self._services.search
            index_verified(search.store, search.embedder, saved)
            logger.info(
                "verified answer=%d saved from escalation=%d", saved.verified_id, escalation_id
            )

        def post_in_thread() -> None:
            posted = [
                self._client.chat_postMessage(
                    channel=channel_id,
                    thread_ts=thread_ts,
                    text=message.text,
                    blocks=message.blocks,
                )
                for message in resolution_post(assignee, resolution)
            ]
            with self._services.database.transaction() as session:
                conversation = session.get_one(Conversation, conversation_id)
                repository.record_message(
                    session,
                    conversation,
                    role=MessageRole.HUMAN,
                    text=resolution,
                    user_id=assignee,
                    slack_ts=posted[0]["ts"],
                )

        steps = [] if already_said else [SlackStep("post the answer", post_in_thread)]
        steps.append(SlackStep("update the card", lambda: self._update_card(escalation_id)))
        deliver(steps, f"resolution of escalation {escalation_id}")

    def send_due_reminders(self) -> int:
        """Re-post cards nobody claimed in time; each reminder is sent by one replica only."""
        wait = timedelta(minutes=self._settings.escalation_remind_minutes)
        with self._services.database.transaction() as session:
            due = [
                (escalation.id, escalation.reminders_sent)
                for escalation in repository.escalations_due_reminder(
                    session, unclaimed_for=wait, max_reminders=MAX_REMINDERS
                )
            ]
        sent = 0
        for escalation_id, sent_so_far in due:
            with self._services.database.transaction() as session:
                mine = repository.take_reminder(session, escalation_id, sent_so_far=sent_so_far)
            if mine:
                self._post_card(escalation_id, reminder=sent_so_far + 1)
                sent += 1
        return sent

    def _post_card(self, escalation_id: int, reminder: int = 0) -> None:
        channel = self._settings.escalation_channel
        if not channel:
            logger.warning(
                "escalation %d has no card: ESCALATION_CHANNEL is not set", escalation_id
            )
            return
        with self._services.database.transaction() as session:
            escalation = session.get_one(Escalation, escalation_id)
            card = self._card(session, escalation, reminder, channel)
            previous = (escalation.card_channel, escalation.card_ts)
        message = escalation_card(card)
        posted = self._client.chat_postMessage(
            channel=channel, text=message.text, blocks=message.blocks
        )
        with self._services.database.transaction() as session:
            repository.set_escalation_card(session, escalation_id, channel=channel, ts=posted["ts"])
        old_channel, old_ts = previous
        if reminder and old_channel and old_ts:  # set together, by set_escalation_card
            try:
                self._edit(old_channel, old_ts, moved_card_notice(card))
            except Exception:  # the new card is up; the old one just does not point at it
                logger.warning("could not mark an escalation's earlier card", exc_info=True)

    def _update_card(self, escalation_id: int) -> None:
        with self._services.database.transaction() as session:
            escalation = session.get_one(Escalation, escalation_id)
            if escalation.card_ts is None or escalation.card_channel is None:
                return
            card = self._card(
                session, escalation, escalation.reminders_sent, escalation.card_channel
            )
            where = (escalation.card_channel, escalation.card_ts)
        self._edit(where[0], where[1], escalation_card(card))

    def _edit(self, channel: str, ts: str, message: SlackMessage) -> None:
        self._client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)

    def _card(
        self, session: Session, escalation: Escalation, reminder: int, card_channel: str
    ) -> EscalationCard:
        """The card as `card_channel` may see it: its people read the draft and the sources,
        so those drawn from a policy they may not read stay off it."""
        conversation = escalation.conversation
        question = asked(escalation)
        answer = escalation.answer
        allowed = self._services.access.channel_audiences(card_channel)
        mentions = (
            self._settings.escalation_fallback_mention
            if reminder >= MAX_REMINDERS
            else self._settings.escalation_mention
        )
        return EscalationCard(
            escalation_id=escalation.id,
            question=question.text if question else "(the question was not recorded)",
            asker_id=escalation.requested_by or conversation.user_id,
            trigger=escalation.trigger,
            priority=escalation.priority,
            thread_link=self._permalink(conversation.channel_id, conversation.thread_ts),
            channel_id=conversation.channel_id,
            mention=mention_syntax(mentions),
            draft=_draft_for(answer, allowed),
            sources=tuple(
                source
                for citation in (answer.citations if answer else [])
                if (source := citation.cited) is not None and source.audience in allowed
            ),
            status=escalation.status.value,
            assignee=escalation.assignee,
            resolution=escalation.resolution,
            reminder=reminder,
        )

    def _permalink(self, channel_id: str, thread_ts: str) -> str | None:
        try:
            return str(
                self._client.chat_getPermalink(channel=channel_id, message_ts=thread_ts)[
                    "permalink"
                ]
            )
        except (SlackApiError, OSError):  # the card goes without the link
            logger.warning("no permalink for the thread of an escalation card", exc_info=True)
            return None


class NotDelivered(Unavailable):
    """A change is stored, but Slack did not take every message about it."""


@dataclass(frozen=True)
class SlackStep:
    """One message about a stored change: `what` names it in the log."""

    what: str
    send: Callable[[], object]


def deliver(steps: list[SlackStep], change: str) -> None:
    """Send every step though one fails (the card still goes when the thread notice did
    not); then raise NotDelivered naming what failed, for the listener to tell the person.
    The change itself is stored already: nothing here can lose it."""
    failed = []
    for step in steps:
        try:
            step.send()
        except Exception:
            logger.exception("could not %s for %s", step.what, change)
            failed.append(step.what)
    if failed:
        raise NotDelivered(f"{change} is recorded, but Slack failed to {' and '.join(failed)}")


def narrowest_audience(
    drew_on: set[str], channel: frozenset[str], everywhere: frozenset[str]
) -> str:
    """Who a verified answer may be shown to, by default: the most restricted audience the
    thread's answer drew on, else the channel's own, else the field teams' one it drew on."""
    for candidates in (drew_on - everywhere, channel - everywhere, drew_on - {DEFAULT_AUDIENCE}):
        if candidates:
            return sorted(candidates)[0]
    return DEFAULT_AUDIENCE


def _save_verified(
    session: Session,
    escalation: Escalation,
    resolution: str,
    author: str,
    draft: VerifiedDraft,
) -> VerifiedEntry:
    question = asked(escalation)
    refs: dict[str, PolicyRef] = {}
    for citation in escalation.answer.citations if escalation.answer else []:
        refs.setdefault(
            citation.doc_id.casefold(),
            PolicyRef(citation.doc_id, citation.version, citation.title or citation.doc_id),
        )
    row = verified_answers.save(
        session,
        question=draft.question or (question.text if question else resolution),
        answer=draft.answer or resolution,
        author=author,
        audience=draft.audience,
        policy_refs=list(refs.values()),
        escalation_id=escalation.id,
        expires_on=draft.expires_on,
    )
    return entry_of(row)


def _draft_for(answer: Answer | None, allowed: frozenset[str]) -> str | None:
    """The bot's draft, unless it drew on a policy the card's channel may not read."""
    if answer is None:
        return None
    drew_on = answer.source_audiences
    if drew_on is None or not set(drew_on) <= allowed:
        return DRAFT_HIDDEN
    return answer.shown_text


def asked(escalation: Escalation) -> Message | None:
    """The question the escalation is about: the one recorded with it, or else the asker's
    last message before the answer it was raised on."""
    if escalation.question_message is not None or escalation.answer is None:
        return escalation.question_message
    earlier = [
        message
        for message in escalation.conversation.messages
        if message.role is MessageRole.USER and message.id < escalation.answer.message_id
    ]
    return earlier[-1] if earlier else None


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()
