"""Questions: mentions in channels, direct messages and follow-ups in the bot's threads."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import BoltContext, BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import SQLAlchemyError

from bot import metrics
from bot.blocks import (
    CreditRef,
    QuoteRef,
    SlackMessage,
    answer_messages,
    error_message,
    section_block,
)
from bot.channels import ChannelPolicy
from bot.dedupe import first_delivery
from bot.escalation import ALREADY_WITH_PEOPLE, Escalations
from bot.incoming import Question, question_from_event
from bot.listeners.registry import Listeners
from bot.middleware import REQUEST_ID, new_request_id
from bot.notices import Recipient
from bot.rate_limits import LimitReached, RateLimits, limit_reached
from bot.replies import AgentReply, PlaceholderReply, Reply, ReplyTarget
from bot.services import Services
from bot.spool import QuestionSpool, SpooledQuestion
from bot.steps import checked_step
from serving.assistant import (
    AssistantAnswer,
    QuestionNotRecorded,
    RecordedQuestion,
    SourcesFound,
)
from serving.escalation_rules import EscalationRules
from serving.passages import BlockKind, Passage
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
KEPT_FOR_LATER = (
    "I can't reach my records right now; I've kept your question and will answer here "
    "when they're back."
)
NOT_KEPT = (
    "Sorry, I can't reach my records right now, and I couldn't keep your question either. "
    "Please ask again in a few minutes, or ask a dispatcher."
)

# Puts the question being handled into the spool (bot/spool.py); raises OSError if it can't.
Keep = Callable[[], None]
# Context key of a question taken up from the spool: it was promised an answer, and the
# spool worker takes questions one at a time, so the rate limits do not apply to it.
FROM_SPOOL = "from_spool"


def register(listeners: Listeners, services: Services, channels: ChannelPolicy) -> None:
    rules = EscalationRules.from_settings(services.settings)
    spool = QuestionSpool.of(services.settings)

    def answer_mention(
        event: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
    ) -> None:
        if first_delivery(services.database, request):
            keep = _keeper(spool, event, context, request)
            take(event, context, client, services, channels, rules, keep, mentioned=True)

    def answer_message(
        event: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
    ) -> None:
        if first_delivery(services.database, request):
            keep = _keeper(spool, event, context, request)
            take(event, context, client, services, channels, rules, keep, mentioned=False)

    listeners.event("app_mention", answer_mention, doing="take your question")
    listeners.event("message", answer_message, doing="take your message")


def take(
    event: dict[str, Any],
    context: BoltContext,
    client: WebClient,
    services: Services,
    channels: ChannelPolicy,
    rules: EscalationRules,
    keep: Keep,
    *,
    mentioned: bool,
) -> None:
    """A mention of the bot (`mentioned`), or a plain message: answer it, log it in a thread
    people own, or leave it to the people it was said to."""
    question = _question(event, context)
    if question is None:
        return
    try:
        thread = _thread_of(services, question)
    except SQLAlchemyError:
        # Without the store nobody can tell whether the bot or people own the thread. A
        # mention or a direct message is the bot's (answering keeps it, and says so); a
        # plain reply in a channel's thread is more often said to people, so it waits in
        # the spool unannounced and is decided once the store is back.
        logger.warning("cannot look up the thread of a message; the store is unavailable")
        thread = _Thread(known=True, escalation=None)
        if not (mentioned or question.is_direct_message):
            if _is_for_the_bot(question, channels, thread):
                _keep_unannounced(question, keep)
            return
    if thread.escalation is not None:
        if not mentioned:  # Slack sends a mention as a message too: that one is logged
            _log_turn_in_escalated_thread(services, question, thread.escalation)
        return
    if mentioned and not channels.answers_in(question):
        _asker(client, question).tell(NOT_ANSWERED_HERE)
        return
    if mentioned or _is_for_the_bot(question, channels, thread):
        answer_question(question, client, services, rules, context, keep)


def replay_spooled(spooled: SpooledQuestion, client: WebClient, services: Services) -> bool:
    """Take a spooled question again, as the listener that kept it would have.

    False when the store refused it again: it stays in the spool.
    """
    refused = False

    def still_refused() -> None:
        nonlocal refused
        refused = True

    context = BoltContext(
        {
            REQUEST_ID: spooled.request_id,
            FROM_SPOOL: True,
            "team_id": spooled.team_id,
            "bot_user_id": spooled.bot_user_id,
        }
    )
    take(
        spooled.event,
        context,
        client,
        services,
        ChannelPolicy.from_settings(services.settings),
        EscalationRules.from_settings(services.settings),
        still_refused,
        mentioned=spooled.listener == "app_mention",
    )
    return not refused


def _keep_unannounced(question: Question, keep: Keep) -> None:
    logger.info("keeping a reply in a channel's thread for when the store is back")
    try:
        keep()
    except OSError:
        logger.exception("could not keep a reply in channel=%s", question.channel_id)


def _keeper(
    spool: QuestionSpool, event: dict[str, Any], context: BoltContext, request: BoltRequest
) -> Keep:
    def keep() -> None:
        event_id = request.body.get("event_id")
        spooled = SpooledQuestion.from_event(
            event,
            event_id=event_id if isinstance(event_id, str) else None,
            team_id=context.team_id or "",
            bot_user_id=context.bot_user_id,
            request_id=str(context.get(REQUEST_ID) or ""),
        )
        spool.keep(spooled)

    return keep


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


def _record_question(services: Services, question: Question) -> RecordedQuestion:
    """Store a question the bot will not answer itself; raises QuestionNotRecorded."""
    return services.assistant.record_question(
        question.text, thread=question.thread, user_id=question.user_id, slack_ts=question.ts
    )


def answer_question(
    question: Question,
    client: WebClient,
    services: Services,
    rules: EscalationRules,
    context: BoltContext,
    keep: Keep,
) -> None:
    """Answer, or hand the question to people, or both.

    - Asked for a person in words: the question goes to people, the model is not called.
    - A sensitive topic: the safety note and "a person is coming" first, then the answer as
      a draft, then a high-priority card with it.
    - Weak evidence: the answer says the policy does not cover it, and a card goes out.
    - Over a rate limit (bot/rate_limits.py): recorded, not answered, and a private note
      says to wait. Asking for a person, sensitive questions and questions taken up from
      the spool are never limited.
    - The store refuses the question: `keep` puts it in the spool, and the asker is told it
      will be answered when the store is back.
    """
    request_id = str(context.get(REQUEST_ID) or new_request_id())
    escalations = Escalations(client, services)
    try:
        if rules.asks_for_a_person(question.text):
            recorded = _record_question(services, question)
            escalated = escalations.escalate(
                recorded.conversation_id,
                trigger=EscalationTrigger.ASKED,
                asker_id=question.user_id,
                question_message_id=recorded.message_id,
            )
            if escalated is None:
                _asker(client, question).tell(ALREADY_WITH_PEOPLE)
            return
        sensitive = rules.sensitive_term(question.text) is not None
        if sensitive:
            escalations.tell_thread_help_is_coming(
                question.channel_id, question.thread_ts, question.user_id, EscalationPriority.HIGH
            )
    except QuestionNotRecorded:
        _keep_for_later(question, request_id, _poster(client, question), keep)
        return
    except Exception:
        _report_failure(question, request_id, _poster(client, question))
        return

    exempt = sensitive or bool(context.get(FROM_SPOOL))
    limited = None if exempt else _limit_reached(services, question)
    if limited is not None:
        _decline_over_limit(question, client, services, limited, request_id, keep)
        return
    answer = stream_answer(question, client, services, request_id, keep)
    if answer is None or not (sensitive or answer.needs_human):
        return
    try:
        escalations.escalate(
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


def _limit_reached(services: Services, question: Question) -> LimitReached | None:
    limits = RateLimits.from_settings(services.settings)
    if not (limits.user_per_minute or limits.channel_per_minute):
        return None
    try:
        return limit_reached(services.database, limits, question)
    except SQLAlchemyError:
        # Nothing to count with: answering meets the same outage and keeps the question.
        logger.warning("cannot count recent questions; the store is unavailable")
        return None


def _decline_over_limit(
    question: Question,
    client: WebClient,
    services: Services,
    limited: LimitReached,
    request_id: str,
    keep: Keep,
) -> None:
    """Record the question (it is not lost, and it counts), then say privately to wait."""
    metrics.QUESTIONS_RATE_LIMITED.labels(limited.scope).inc()
    logger.info(
        "over the %s limit: %d questions in a minute channel=%s user=%s request=%s",
        limited.scope,
        limited.asked,
        question.channel_id,
        question.user_id,
        request_id,
    )
    try:
        _record_question(services, question)
        _asker(client, question).tell(limited.note)
    except QuestionNotRecorded:
        _keep_for_later(question, request_id, _poster(client, question), keep)
    except Exception:
        _report_failure(question, request_id, _poster(client, question))


def _keep_for_later(
    question: Question, request_id: str, show: Callable[[SlackMessage], object], keep: Keep
) -> None:
    """The store refused the question: keep it in the spool first, then tell the asker."""
    logger.error(
        "the store refused the question in channel=%s thread=%s request=%s; keeping it",
        question.channel_id,
        question.thread_ts,
        request_id,
        exc_info=True,
    )
    try:
        keep()
    except OSError:
        logger.exception("could not keep the question of request=%s either", request_id)
        _show(show, _notice(f":warning: {NOT_KEPT} (reference `{request_id}`)"), request_id)
        return
    _show(show, _notice(f":hourglass: {KEPT_FOR_LATER} (reference `{request_id}`)"), request_id)


def _notice(mrkdwn: str) -> SlackMessage:
    return SlackMessage(text=mrkdwn, blocks=[section_block(mrkdwn)])


def _show(show: Callable[[SlackMessage], object], message: SlackMessage, request_id: str) -> None:
    try:
        show(message)
    except SlackApiError:
        logger.exception("could not tell the asker about request=%s", request_id)


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
    question: Question, client: WebClient, services: Services, request_id: str, keep: Keep
) -> AssistantAnswer | None:
    """Show a sign at once, stream the answer into the thread, finish with sources and buttons.

    Any failure ends in a short apology in the thread with the request id, which the log
    line of the failure carries too; the question was stored before anything could fail.
    A question the store refused goes to the spool instead (`keep`), and the sign says so.
    Returns the recorded answer, or None when it failed.
    """
    started = time.perf_counter()
    reply = _reply_for(question, client, services)
    reply.start()
    # The sign is up; the model answers BOT_ANSWER_WORKERS questions at once, so this one
    # may wait here for its turn.
    with services.answer_slots:
        return _answer_into(question, reply, client, services, request_id, keep, started)


def _answer_into(
    question: Question,
    reply: Reply,
    client: WebClient,
    services: Services,
    request_id: str,
    keep: Keep,
    started: float,
) -> AssistantAnswer | None:
    shown = ""
    answer: AssistantAnswer | None = None
    try:
        stream = services.assistant.stream_answer(
            question.text,
            thread=question.thread,
            user_id=question.user_id,
            slack_ts=question.ts,
            reply_ts=reply.ts,
            # Who will read the answer decides which policies it may draw on.
            audiences=services.access.audiences_for(question, client),
        )
        for event in stream.events():
            if isinstance(event, SourcesFound):
                reply.step(event, [result.cited() for result in event.results])
                continue
            if not shown:
                metrics.ANSWER_SECONDS.labels("first_text").observe(time.perf_counter() - started)
            shown += event
            reply.update(shown)
        answer = stream.result
        if not shown:  # nothing passed its checks while streaming: the final text is the first
            metrics.ANSWER_SECONDS.labels("first_text").observe(time.perf_counter() - started)
        sources = [result.cited() for result in answer.citations]
        quote = quote_ref(answer.quote, answer.declined) if answer.quote is not None else None
        credit = CreditRef(answer.credit.author, answer.credit.day) if answer.credit else None
        messages = answer_messages(answer.text, sources, answer.answer_id, quote, credit)
        reply.finish(answer.text, messages, checked_step(answer))
    except QuestionNotRecorded:
        _keep_for_later(question, request_id, reply.fail, keep)
        return None
    except Exception:
        metrics.ANSWERS.labels("failed").inc()
        if answer is not None:
            # Slack failed, not the answer: the log points at the row an operator can read.
            logger.error(
                "answer=%d is recorded but was not shown request=%s", answer.answer_id, request_id
            )
        _report_failure(question, request_id, reply.fail, shown)
        return None
    metrics.ANSWER_SECONDS.labels("final").observe(time.perf_counter() - started)
    metrics.observe_answer(answer)
    return answer


def _asker(client: WebClient, question: Question) -> Recipient:
    """Private notes to the asker: in their thread, or beside a question that starts none."""
    thread_ts = question.thread_ts if question.in_thread else None
    return Recipient(client, question.user_id, question.channel_id, thread_ts)


def _poster(client: WebClient, question: Question) -> Callable[[SlackMessage], object]:
    def post(message: SlackMessage) -> object:
        return client.chat_postMessage(
            channel=question.channel_id,
            thread_ts=question.thread_ts,
            text=message.text,
            blocks=message.blocks,
        )

    return post


def quote_ref(passage: Passage, closest_only: bool) -> QuoteRef:
    return QuoteRef(
        markdown=passage.markdown,
        is_table=passage.kind is BlockKind.TABLE,
        source=passage.source.cited(),
        closest_only=closest_only,
    )


def _reply_for(question: Question, client: WebClient, services: Services) -> Reply:
    settings = services.settings
    target = ReplyTarget(
        client,
        team_id=question.team_id,
        channel_id=question.channel_id,
        channel_type=question.channel_type,
        thread_ts=question.thread_ts,
        user_id=question.user_id,
    )
    interval_s = settings.slack_update_interval_s
    if settings.slack_native_streaming:
        return AgentReply(
            target, support=services.streaming, pacing=services.pacing, interval_s=interval_s
        )
    return PlaceholderReply(target, pacing=services.pacing, interval_s=interval_s)
