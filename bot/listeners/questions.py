"""Questions: mentions in channels, direct messages and follow-ups in the bot's threads."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks import SourceRef, answer_messages, error_message
from bot.channels import ChannelPolicy
from bot.incoming import Question, question_from_event
from bot.middleware import REQUEST_ID, new_request_id
from bot.replies import NativeStreamReply, PlaceholderReply, Reply
from bot.services import Services
from retrieval.search import SearchResult
from store import repository

logger = logging.getLogger(__name__)

NOT_ANSWERED_HERE = (
    "I don't answer questions in this channel. Send me a direct message, or ask in one of "
    "the channels I'm set up for."
)


def register(
    app: App, services: Services, channels: ChannelPolicy, ack: Callable[..., None]
) -> None:
    def answer_mention(event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        question = _question(event, context)
        if question is None:
            return
        if not channels.answers_in(question):
            client.chat_postEphemeral(
                channel=question.channel_id,
                user=question.user_id,
                thread_ts=question.thread_ts if question.in_thread else None,
                text=NOT_ANSWERED_HERE,
            )
            return
        answer_question(question, client, services, context)

    def answer_message(event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        question = _question(event, context)
        if question is not None and _is_for_the_bot(question, channels, services):
            answer_question(question, client, services, context)

    app.event("app_mention")(ack=ack, lazy=[answer_mention])
    app.event("message")(ack=ack, lazy=[answer_message])


def _question(event: dict[str, Any], context: BoltContext) -> Question | None:
    return question_from_event(
        event, team_id=context.team_id or "", bot_user_id=context.bot_user_id
    )


def _is_for_the_bot(question: Question, channels: ChannelPolicy, services: Services) -> bool:
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
        with services.database.transaction() as session:
            return repository.bot_answered_in(
                session,
                team_id=question.team_id,
                channel_id=question.channel_id,
                thread_ts=question.thread_ts,
            )
    return channels.takes_every_message_in(question.channel_id)


def answer_question(
    question: Question, client: WebClient, services: Services, context: BoltContext
) -> None:
    """Show a sign at once, stream the answer into the thread, finish with sources and buttons.

    Any failure ends in a short apology in the thread with the request id, which the log
    line of the failure carries too; the question was stored before anything could fail.
    """
    request_id = str(context.get(REQUEST_ID) or new_request_id())
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
            shown += chunk
            reply.update(shown)
        answer = stream.result
        sources = [source_ref(result) for result in answer.citations]
        reply.finish(answer.text, answer_messages(answer.text, sources, answer.answer_id))
    except Exception:
        logger.exception(
            "could not answer in channel=%s thread=%s request=%s",
            question.channel_id,
            question.thread_ts,
            request_id,
        )
        try:
            reply.fail(error_message(request_id, shown))
        except SlackApiError:
            logger.exception("could not report the failure of request=%s", request_id)


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
