"""How one answer appears in its thread: a sign at once, its steps, streamed text, the end.

Two ways:
- `AgentReply` (the default) uses Slack's agent methods: a status with loading messages at
  once (assistant.threads.setStatus), then one streamed message (chat.startStream) whose
  first part is the steps (searching, what was found with links, checking), then the text
  as it passes its checks (chat.appendStream), closed by chat.stopStream with the policy's
  own words, the sources and the feedback buttons. Where Slack refuses a method for a kind
  of channel, `StreamingSupport` remembers it and the answer goes on as a placeholder;
- `PlaceholderReply` posts "Looking that up…" and edits it as text arrives.

Refreshes (appends, edits) wait SLACK_UPDATE_INTERVAL_S and go only while the workspace's
rate tier has room (bot/slack_pacing.py); the start and the end of an answer always go.
A failed refresh never ends an answer: the next one or the final message catches up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks import (
    QUOTE_BLOCK_ID,
    SlackMessage,
    SourceRef,
    placeholder_message,
    streaming_message,
)
from bot.slack_pacing import RESERVE, SlackPacing
from bot.steps import found_steps
from serving.assistant import SourcesFound

logger = logging.getLogger(__name__)

SET_STATUS = "assistant.threads.setStatus"
START_STREAM = "chat.startStream"
APPEND_STREAM = "chat.appendStream"
UPDATE = "chat.update"
STATUS = "is looking through current policy…"
LOADING_MESSAGES = [
    "Searching current policy…",
    "Reading the sections that match…",
    "Checking the answer against the policy…",
]
# An answer's final message waits out this many rate-limit answers (each after its
# Retry-After, at most MAX_RETRY_AFTER_S) beyond the client's own retries.
PATIENT_POST_ATTEMPTS = 10
MAX_RETRY_AFTER_S = 30.0
# Errors by which Slack says a method is not for this app, workspace or kind of channel:
# asking again in the same kind of channel would only fail again.
REFUSALS = frozenset(
    {
        "channel_type_not_supported",
        "method_not_supported_for_channel_type",
        "not_allowed",
        "not_agent_app",
        "missing_scope",
        "unknown_method",
    }
)


@dataclass(frozen=True)
class ReplyTarget:
    """Where an answer goes, and to whom Slack streams it."""

    client: WebClient
    team_id: str
    channel_id: str
    channel_type: str
    thread_ts: str
    user_id: str

    def post(self, message: SlackMessage, *, patient: bool = False) -> Any:
        """A new message in the answer's thread. `patient`: the message must land (an answer,
        an apology), so Slack's rate limit is waited out a few more times than the client's
        own retries: a burst in one channel drains at about one message a second."""
        for attempt in range(1, PATIENT_POST_ATTEMPTS + 1):
            try:
                return self.client.chat_postMessage(
                    channel=self.channel_id,
                    thread_ts=self.thread_ts,
                    text=message.text,
                    blocks=message.blocks,
                    unfurl_links=False,
                    unfurl_media=False,
                )
            except SlackApiError as error:
                if not patient or attempt == PATIENT_POST_ATTEMPTS:
                    raise
                if error.response.status_code != HTTPStatus.TOO_MANY_REQUESTS:
                    raise
                time.sleep(_retry_after_s(error))
        raise AssertionError("unreachable: the last attempt returns or raises")


@dataclass
class StreamingSupport:
    """The agent methods Slack has refused, by kind of channel; remembered for the process."""

    _refused: set[tuple[str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allows(self, method: str, channel_type: str) -> bool:
        with self._lock:
            return (method, channel_type) not in self._refused

    def refuse(self, method: str, channel_type: str, error: str) -> None:
        with self._lock:
            if (method, channel_type) in self._refused:
                return
            self._refused.add((method, channel_type))
        logger.warning(
            "Slack refused %s in %s conversations (%s); not asking there again", method,
            channel_type, error,
        )  # fmt: skip


class Reply(Protocol):
    @property
    def ts(self) -> str | None:
        """The message the answer goes into, once there is one."""

    def start(self) -> None: ...
    def step(self, found: SourcesFound, sources: list[SourceRef]) -> None:
        """Search has run: show what it found, if this reply shows steps."""

    def update(self, markdown_so_far: str) -> None: ...
    def finish(
        self, answer_markdown: str, messages: Sequence[SlackMessage], checked: dict[str, Any]
    ) -> None:
        """Show the final answer: `messages` are its Block Kit form, split to fit Slack;
        `checked` the step that closes the check, where one is open."""

    def fail(self, message: SlackMessage) -> None: ...


class PlaceholderReply:
    def __init__(
        self,
        target: ReplyTarget,
        *,
        pacing: SlackPacing,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._target = target
        self._pacing = pacing
        self._interval_s = interval_s
        self._clock = clock
        self._ts: str | None = None
        self._last_edit = float("-inf")
        self._shown = ""

    @property
    def ts(self) -> str | None:
        return self._ts

    def start(self) -> None:
        response = _call(self._target.post, placeholder_message())
        if response is not None:
            # The first text goes out as soon as it exists; only later edits wait an interval.
            self._ts = response["ts"]

    def step(self, found: SourcesFound, sources: list[SourceRef]) -> None:
        pass  # an edit per step would cost a Tier 3 call for little: the placeholder says it

    def update(self, markdown_so_far: str) -> None:
        if self._ts is None or markdown_so_far == self._shown:
            return
        if self._clock() - self._last_edit < self._interval_s:
            return
        if not self._pacing.may_refresh(UPDATE, self._target.team_id):
            return
        self._last_edit = self._clock()
        if _call(self._edit, streaming_message(markdown_so_far)) is not None:
            self._shown = markdown_so_far

    def finish(
        self, answer_markdown: str, messages: Sequence[SlackMessage], checked: dict[str, Any]
    ) -> None:
        first, *rest = messages
        self._replace_or_post(first)
        for message in rest:
            self._target.post(message, patient=True)

    def fail(self, message: SlackMessage) -> None:
        self._replace_or_post(message)

    def _replace_or_post(self, message: SlackMessage) -> None:
        # The final edit must land: if the placeholder never got posted, or cannot be
        # edited any more, the message goes into the thread as a new one.
        if self._ts is not None:
            self._pacing.spend(UPDATE, self._target.team_id)
            if _call(self._edit, message) is not None:
                return
        self._ts = self._target.post(message, patient=True)["ts"]

    def _edit(self, message: SlackMessage) -> Any:
        assert self._ts is not None, "only a posted placeholder is edited"
        return self._target.client.chat_update(
            channel=self._target.channel_id, ts=self._ts, text=message.text, blocks=message.blocks
        )


class AgentReply:
    def __init__(
        self,
        target: ReplyTarget,
        *,
        support: StreamingSupport,
        pacing: SlackPacing,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._target = target
        self._support = support
        self._pacing = pacing
        self._interval_s = interval_s
        self._clock = clock
        self._ts: str | None = None
        self._streamed = ""  # the answer's Markdown as far as Slack has it
        self._last_append = float("-inf")
        self._checking = False  # the check step is shown in progress
        self._placeholder: PlaceholderReply | None = None  # where Slack refused to stream

    @property
    def ts(self) -> str | None:
        return self._placeholder.ts if self._placeholder is not None else self._ts

    def start(self) -> None:
        if not self._support.allows(START_STREAM, self._target.channel_type):
            self._fall_back()
            return
        if not self._support.allows(SET_STATUS, self._target.channel_type):
            return  # the steps, a moment later, are the first sign
        if not self._pacing.may_refresh(SET_STATUS, self._target.team_id, reserve=0):
            return  # the same: under load the status is what waits
        self._attempt(
            SET_STATUS,
            lambda: self._target.client.assistant_threads_setStatus(
                channel_id=self._target.channel_id,
                thread_ts=self._target.thread_ts,
                status=STATUS,
                loading_messages=LOADING_MESSAGES,
            ),
        )

    def step(self, found: SourcesFound, sources: list[SourceRef]) -> None:
        if self._placeholder is not None:
            return
        chunks = found_steps(found, sources)
        self._checking = found.covered
        if self._ts is None:
            self._open(chunks)
        else:
            self._append(chunks)

    def update(self, markdown_so_far: str) -> None:
        if self._placeholder is not None:
            self._placeholder.update(markdown_so_far)
            return
        if self._clock() - self._last_append < self._interval_s:
            return
        # The first words go while any of the workspace's allowance is left (they are what the
        # asker waits for); later ones leave a reserve for the first words of other answers.
        reserve = 0 if not self._streamed else RESERVE
        if not self._pacing.may_refresh(APPEND_STREAM, self._target.team_id, reserve=reserve):
            return
        self._last_append = self._clock()
        self._stream_text(markdown_so_far)

    def finish(
        self, answer_markdown: str, messages: Sequence[SlackMessage], checked: dict[str, Any]
    ) -> None:
        if self._placeholder is None and self._ts is None:
            self._open([], answer_markdown)
        if self._placeholder is not None:
            self._placeholder.finish(answer_markdown, messages, checked)
            return
        # A stream cannot be taken back: when the final answer is not the streamed text
        # going on (it failed verification after checked sentences went out), it follows it.
        if answer_markdown.startswith(self._streamed):
            rest = answer_markdown[len(self._streamed) :]
        else:
            rest = f"\n\n{answer_markdown}"
        chunks: list[dict[str, Any]] = []
        if rest.strip():
            chunks.append({"type": "markdown_text", "text": rest})
        if self._checking:
            chunks.append(checked)
        stopped = self._stop(chunks=chunks, blocks=footer_blocks(messages[-1].blocks))
        if not stopped:
            # The stream is gone (expired, or stopped by the person): the answer still lands.
            for message in messages:
                self._target.post(message, patient=True)

    def fail(self, message: SlackMessage) -> None:
        if self._placeholder is not None:
            self._placeholder.fail(message)
        elif self._ts is None or not self._stop(chunks=[], blocks=_apology(message.blocks)):
            self._target.post(message, patient=True)

    def _open(self, chunks: list[dict[str, Any]], markdown: str = "") -> None:
        """Start the streamed message; where Slack refuses, fall back to a placeholder."""
        if markdown:
            chunks = [*chunks, {"type": "markdown_text", "text": markdown}]
        target = self._target
        response = self._attempt(
            START_STREAM,
            lambda: target.client.chat_startStream(
                channel=target.channel_id,
                thread_ts=target.thread_ts,
                recipient_team_id=target.team_id,
                recipient_user_id=target.user_id,
                chunks=chunks,
                task_display_mode="timeline",
            ),
        )
        if response is not None:
            self._ts = response["ts"]
            self._streamed += markdown
        elif not self._support.allows(START_STREAM, target.channel_type):
            self._fall_back()

    def _stream_text(self, markdown: str) -> None:
        new_text = markdown[len(self._streamed) :]
        if not new_text:
            return
        if self._ts is None:
            self._open([], new_text)
            if self._placeholder is not None:
                self._placeholder.update(markdown)
        elif self._append([{"type": "markdown_text", "text": new_text}]):
            self._streamed = markdown

    def _append(self, chunks: list[dict[str, Any]]) -> bool:
        target, ts = self._target, self._ts
        assert ts is not None, "only an open stream is appended to"
        response = self._attempt(
            APPEND_STREAM,
            lambda: target.client.chat_appendStream(
                channel=target.channel_id, ts=ts, chunks=chunks
            ),
        )
        return response is not None

    def _stop(self, *, chunks: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> bool:
        target, ts = self._target, self._ts
        if ts is None:  # the stream never started (Slack failed to): the caller posts instead
            return False
        response = self._attempt(
            "chat.stopStream",
            lambda: target.client.chat_stopStream(
                channel=target.channel_id, ts=ts, chunks=chunks or None, blocks=blocks
            ),
        )
        return response is not None

    def _fall_back(self) -> None:
        self._placeholder = PlaceholderReply(
            self._target, pacing=self._pacing, interval_s=self._interval_s, clock=self._clock
        )
        self._placeholder.start()

    def _attempt(self, method: str, request: Callable[[], Any]) -> Any | None:
        """Call, remembering a refusal of the method for this kind of channel."""
        channel_type = self._target.channel_type

        def refused(code: str) -> None:
            self._support.refuse(method, channel_type, code)

        return _call(request, what=f"a call to {method}", on_refusal=refused)


def footer_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What follows the answer's text: from the quote, or else the last divider, on."""
    for index, block in enumerate(blocks):
        if block.get("block_id") == QUOTE_BLOCK_ID:
            return blocks[index:]
    dividers = [index for index, block in enumerate(blocks) if block.get("type") == "divider"]
    if dividers:
        return blocks[dividers[-1] :]
    return [block for block in blocks if block.get("type") in ("context_actions", "actions")]


def _retry_after_s(error: SlackApiError) -> float:
    headers = {name.lower(): value for name, value in (error.response.headers or {}).items()}
    value = headers.get("retry-after", "1")
    value = value[0] if isinstance(value, list) else value
    try:
        return min(float(value), MAX_RETRY_AFTER_S)
    except ValueError:
        return 1.0


def _apology(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An apology under a stream: what the stream already shows (the answer so far, up to
    the apology's divider) is not repeated."""
    dividers = [index for index, block in enumerate(blocks) if block.get("type") == "divider"]
    return blocks[dividers[-1] :] if dividers else blocks


def _call(
    request: Callable[..., Any],
    *args: Any,
    what: str = "a call",
    on_refusal: Callable[[str], None] | None = None,
) -> Any | None:
    """A Web API call whose failure is logged and survived; None when it failed.
    `on_refusal` hears the errors by which Slack refuses a method outright (REFUSALS)."""
    try:
        return request(*args)
    except SlackApiError as error:
        code = str(error.response.get("error", ""))
        if on_refusal is not None and code in REFUSALS:
            on_refusal(code)
        else:
            logger.warning("Slack refused %s: %s", what, code or error)
        return None
