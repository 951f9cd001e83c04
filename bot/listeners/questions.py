"""Questions: mentions in channels, direct messages and follow-ups in the bot's threads."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltContext, BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import metrics
from bot.blocks import SlackMessage, SourceRef, answer_messages, error_message
from bot.channels import ChannelPolicy
from bot.dedupe import first_delivery
from bot.escalation import ALREADY_WITH_PEOPLE, Handoff
from bot.incoming import Question, question_from_event
from bot.middleware import REQUEST_ID, new_request_id
from bot.replies import NativeStreamReply, PlaceholderReply, Reply
from bot.services import Services
from retrieval.search import SearchResult
from serving.assistant import AssistantAnswer
from serving.escalation_rules import EscalationRules
from store import repository
from store.models import (
    Conversation,
    ConversationState,
    Escalation,
    EscalationPriority,
    EscalationTrigger,
    MessageRole,
)

logger = logging.getLogger(__name__)

NOT_ANSWERED_HERE = (
    "I don't answer questions in this channel. Send me a direct message, or ask in one of "
    "the channels I'm set up for."
)


def register(
    app: App, services: Services, channels: ChannelPolicy, ack: Callable[..., None]
) -> None:
    rules = EscalationRules(
        services.settings.escalation_phrases, services.settings.escalation_sensitive_terms
    )

    def answer_mention(
        event: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
    ) -> None:
        if not first_delivery(services.database, request):
            return
        question = _question(event, context)
        if question is None or _thread_of(services, question).escalation is not None:
            return  # in a thread people own, the message event logs the mention
        if not channels.answers_in(question):
            client.chat_postEphemeral(
                channel=question.channel_id,
                user=question.user_id,
                thread_ts=question.thread_ts if question.in_thread else None,
                text=NOT_ANSWERED_HERE,
            )
            return
        answer_question(question, client, services, rules, context)

    def answer_message(
        event: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
    ) -> None:
        if not first_delivery(services.database, request):
            return
        question = _question(event, context)
        if question is None:
            return
        thread = _thread_of(services, question)
        if thread.escalation is not None:
            _log_turn_in_escalated_thread(services, question, thread.escalation)
        elif _is_for_the_bot(question, channels, thread):
            answer_question(question, client, services, rules, context)

    app.event("app_mention")(ack=ack, lazy=[answer_mention])
    app.event("message")(ack=ack, lazy=[answer_message])


def _question(event: dict[str, Any], context: BoltContext) -> Question | None:
    return question_from_event(
        event, team_id=context.team_id or "", bot_user_id=context.bot_user_id
    )


def _is_for_the_bot(question: Question, channels: ChannelPolicy, thread: _Thread) -> bool:
    """Which plain messages (no app_mention event) the bot takes as questions to it."""
    if not channels.answers_in(question):
        return False
    if question.in_thread and (question.is_acknowledgement or question.mentions_someone_else):
        return False  # said to the people in the thread
    if question.is_direct_message:
        return True
    if question.mentions_bot:
        return False  # its app_mention event answers it
    if question.in_thread:
        return thread.known  # the bot took a question there (answered it, or handed it on)
    return channels.takes_every_message_in(question.channel_id)


@dataclass(frozen=True)
class _Thread:
    """What the store knows of the thread a reply was posted in (one lookup per message)."""

    known: bool  # a conversation exists: the bot took a question there
    escalation: Escalation | None  # the escalation that holds it, if people own it now


def _thread_of(services: Services, question: Question) -> _Thread:
    if not question.in_thread:
        return _Thread(known=False, escalation=None)
    with services.database.transaction() as session:
        conversation = repository.find_conversation(
            session,
            team_id=question.team_id,
            channel_id=question.channel_id,
            thread_ts=question.thread_ts,
        )
        if conversation is None:
            return _Thread(known=False, escalation=None)
        escalation = None
        if conversation.state is ConversationState.ESCALATED:
            escalation = repository.find_unresolved_escalation(session, conversation.id)
            if escalation is not None:
                session.expunge(escalation)
        return _Thread(known=True, escalation=escalation)


def _log_turn_in_escalated_thread(
    services: Services, question: Question, escalation: Escalation
) -> None:
    """The bot stays silent, but the thread is still recorded: the asker's messages as user
    turns, everyone else's as human turns (they become training data)."""
    with services.database.transaction() as session:
        conversation = session.get_one(Conversation, escalation.conversation_id)
        askers = {conversation.user_id, escalation.requested_by}
        role = MessageRole.USER if question.user_id in askers else MessageRole.HUMAN
        repository.record_message(
            session,
            conversation,
            role=role,
            text=question.text,
            user_id=question.user_id,
            slack_ts=question.ts,
        )


def _record_question(services: Services, question: Question) -> tuple[int, int]:
    """Store a question the bot will not answer itself: (conversation id, message id)."""
    with services.database.transaction() as session:
        conversation = repository.find_or_open_conversation(
            session,
            team_id=question.team_id,
            channel_id=question.channel_id,
            thread_ts=question.thread_ts,
            user_id=question.user_id,
        )
        asked = repository.record_user_message(
            session,
            conversation,
            text=question.text,
            user_id=question.user_id,
            slack_ts=question.ts,
        )
        return conversation.id, asked.id


def answer_question(
    question: Question,
    client: WebClient,
    services: Services,
    rules: EscalationRules,
    context: BoltContext,
) -> None:
    """Answer, or hand the question to people, or both.

    - Asked for a person in words: the question goes to people, the model is not called.
    - A sensitive topic: the safety note and "a person is coming" first, then the answer as
      a draft, then a high-priority card with it.
    - Weak evidence: the answer says the policy does not cover it, and a card goes out.
    """
    request_id = str(context.get(REQUEST_ID) or new_request_id())
    handoff = Handoff(client, services)
    try:
        if rules.asks_for_a_person(question.text):
            conversation_id, question_id = _record_question(services, question)
            escalated = handoff.escalate(
                conversation_id,
                trigger=EscalationTrigger.ASKED,
                asker_id=question.user_id,
                question_message_id=question_id,
            )
            if escalated is None:
                client.chat_postEphemeral(
                    channel=question.channel_id,
                    user=question.user_id,
                    thread_ts=question.thread_ts,
                    text=ALREADY_WITH_PEOPLE,
                )
            return
        sensitive = rules.sensitive_term(question.text) is not None
        if sensitive:
            handoff.tell_thread_help_is_coming(
                question.channel_id, question.thread_ts, question.user_id, EscalationPriority.HIGH
            )
    except Exception:
        _report_failure(question, request_id, _poster(client, question))
        return

    answer = stream_answer(question, client, services, request_id)
    if answer is None or not (sensitive or answer.needs_human):
        return
    try:
        handoff.escalate(
            answer.conversation_id,
            trigger=EscalationTrigger.SENSITIVE if sensitive else EscalationTrigger.WEAK_EVIDENCE,
            priority=EscalationPriority.HIGH if sensitive else EscalationPriority.NORMAL,
            asker_id=question.user_id,
            question_message_id=answer.question_message_id,
            answer_id=answer.answer_id,
            tell_thread=False,  # the safety note, or the answer itself, has said so
        )
    except Exception:
        logger.exception("could not escalate answer=%d request=%s", answer.answer_id, request_id)


def _report_failure(
    question: Question, request_id: str, show: Callable[[SlackMessage], object], shown: str = ""
) -> None:
    """Log the failure with its request id, then show the user an apology quoting that id."""
    logger.exception(
        "could not answer in channel=%s thread=%s request=%s",
        question.channel_id,
        question.thread_ts,
        request_id,
    )
    try:
        show(error_message(request_id, shown))
    except SlackApiError:
        logger.exception("could not report the failure of request=%s", request_id)


def stream_answer(
    question: Question, client: WebClient, services: Services, request_id: str
) -> AssistantAnswer | None:
    """Show a sign at once, stream the answer into the thread, finish with sources and buttons.

    Any failure ends in a short apology in the thread with the request id, which the log
    line of the failure carries too; the question was stored before anything could fail.
    Returns the recorded answer, or None when it failed.
    """
    started = time.perf_counter()
    reply = _reply_for(question, client, services)
    reply.start()
    shown = ""
    try:
        stream = services.assistant.stream_answer(
            question.text,
            thread=question.thread,
            user_id=question.user_id,
            slack_ts=question.ts,
            reply_ts=reply.ts,
        )
        for chunk in stream:
            if not shown:
                metrics.ANSWER_SECONDS.labels("first_text").observe(time.perf_counter() - started)
            shown += chunk
            reply.update(shown)
        answer = stream.result
        sources = [source_ref(result) for result in answer.citations]
        reply.finish(answer.text, answer_messages(answer.text, sources, answer.answer_id))
    except Exception:
        metrics.ANSWERS.labels("failed").inc()
        _report_failure(question, request_id, reply.fail, shown)
        return None
    metrics.ANSWER_SECONDS.labels("final").observe(time.perf_counter() - started)
    metrics.observe_answer(answer)
    return answer


def _poster(client: WebClient, question: Question) -> Callable[[SlackMessage], object]:
    def post(message: SlackMessage) -> object:
        return client.chat_postMessage(
            channel=question.channel_id,
            thread_ts=question.thread_ts,
            text=message.text,
            blocks=message.blocks,
        )

    return post


def source_ref(result: SearchResult) -> SourceRef:
    return SourceRef(
        title=result.title,
        section=result.section,
        version=result.version,
        effective_from=result.effective_from,
        url=result.url,
    )


def _reply_for(question: Question, client: WebClient, services: Services) -> Reply:
    settings = services.settings
    if settings.slack_native_streaming:
        return NativeStreamReply(
            client,
            channel_id=question.channel_id,
            thread_ts=question.thread_ts,
            question_ts=question.ts,
            team_id=question.team_id,
            user_id=question.user_id,
            interval_s=settings.slack_update_interval_s,
        )
    return PlaceholderReply(
        client,
        channel_id=question.channel_id,
        thread_ts=question.thread_ts,
        interval_s=settings.slack_update_interval_s,
    )
