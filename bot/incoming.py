"""Slack message events as questions: which ones to take, and their text without Slack markup.

Pure functions over the event payload, so every rule about what the bot answers is tested
without a Slack client.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from serving.assistant import ThreadKey

# Subtypes that still carry a person's new question; every other subtype (edits, deletions,
# joins, bot posts, channel topic changes...) is not a question.
_QUESTION_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL_LINK = re.compile(r"<#[CG][A-Z0-9]+\|([^>]*)>")
_LABELED_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)\|([^>]*)>")
_BARE_LINK = re.compile(r"<((?:https?|mailto):[^>]+)>")
_SPECIAL_MENTION = re.compile(r"<!([a-z]+)(?:\|[^>]*)?>")
# A thread reply that only thanks or acknowledges is said to people, not asked of the bot.
_ACKNOWLEDGEMENT = re.compile(
    r"^\W*(thanks?( you)?|thx|ty|ok(ay)?|got it|great|perfect|cool|will do|:[a-z0-9_+-]+:)"
    r"[\s\W]*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Question:
    """A person's message the bot may answer, and where the answer goes."""

    team_id: str
    channel_id: str
    user_id: str
    text: str  # Slack markup turned into plain text, the bot's own mention removed
    ts: str  # the question's message
    thread_ts: str  # the thread the answer goes into: the question's own, or its parent's
    is_direct_message: bool
    # "im", "mpim", "group" or "channel": what Slack allows can differ by kind of channel.
    channel_type: str
    in_thread: bool  # a reply inside an existing thread
    mentions_bot: bool
    mentions_someone_else: bool

    @property
    def thread(self) -> ThreadKey:
        return ThreadKey(self.team_id, self.channel_id, self.thread_ts)

    @property
    def is_acknowledgement(self) -> bool:
        return bool(_ACKNOWLEDGEMENT.match(self.text))


def question_from_event(
    event: dict[str, Any], *, team_id: str, bot_user_id: str | None
) -> Question | None:
    """The question in a `message` or `app_mention` event; None for anything else.

    Not questions: edits, deletions and other subtypes, messages from bots (this one
    included), and messages with no text.
    """
    subtype = event.get("subtype")
    if not isinstance(subtype, str | None) or subtype not in _QUESTION_SUBTYPES:
        return None
    user_id = event.get("user")
    if not isinstance(user_id, str) or event.get("bot_id") or user_id == bot_user_id:
        return None
    raw_text = event.get("text")
    channel_id = event.get("channel")
    ts = event.get("ts")
    if not isinstance(raw_text, str) or not isinstance(channel_id, str) or not isinstance(ts, str):
        return None
    mentioned = set(_USER_MENTION.findall(raw_text))
    text = plain_text(raw_text, bot_user_id)
    if not text:
        return None
    thread_ts = event.get("thread_ts")
    in_thread = isinstance(thread_ts, str) and thread_ts != ts
    return Question(
        team_id=team_id,  # the workspace, not the sender's team in a shared channel
        channel_id=channel_id,
        user_id=user_id,
        text=text,
        ts=ts,
        thread_ts=thread_ts if isinstance(thread_ts, str) else ts,
        is_direct_message=event.get("channel_type") == "im" or channel_id.startswith("D"),
        channel_type=_channel_type(event, channel_id),
        in_thread=in_thread,
        mentions_bot=bot_user_id in mentioned,
        mentions_someone_else=bool(mentioned - {bot_user_id}),
    )


def _channel_type(event: dict[str, Any], channel_id: str) -> str:
    # Message events name it; mentions do not, and the id's first letter tells the kind.
    named = event.get("channel_type")
    if isinstance(named, str) and named:
        return named
    return {"D": "im", "G": "group"}.get(channel_id[:1], "channel")


def plain_text(slack_text: str, bot_user_id: str | None) -> str:
    """Slack's message markup as a person reads it; the bot's own mention dropped."""

    def mention(match: re.Match[str]) -> str:
        return "" if match.group(1) == bot_user_id else f"@{match.group(1)}"

    text = _USER_MENTION.sub(mention, slack_text)
    text = _CHANNEL_LINK.sub(lambda match: f"#{match.group(1)}", text)
    text = _LABELED_LINK.sub(lambda match: f"{match.group(2)} ({match.group(1)})", text)
    text = _BARE_LINK.sub(lambda match: match.group(1), text)
    text = _SPECIAL_MENTION.sub(lambda match: f"@{match.group(1)}", text)
    return " ".join(html.unescape(text).split())
