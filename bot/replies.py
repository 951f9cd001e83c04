"""How one answer appears in its thread: an immediate sign, streamed text, the final message.

Two ways, chosen by SLACK_NATIVE_STREAMING:
- `PlaceholderReply` posts "Looking that up…" at once and edits it as text arrives, no more
  often than SLACK_UPDATE_INTERVAL_S (chat.update is Tier 3, about 50 a minute);
- `NativeStreamReply` adds an :eyes: reaction at once and streams with chat.startStream /
  appendStream / stopStream, for workspaces that have them.
A failed edit never ends an answer: the next edit or the final message catches up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks import QUOTE_BLOCK_ID, SlackMessage, placeholder_message, streaming_message

logger = logging.getLogger(__name__)

THINKING_REACTION = "eyes"


class Reply(Protocol):
    @property
    def ts(self) -> str | None:
        """The message the answer goes into, once there is one."""

    def start(self) -> None: ...
    def update(self, markdown_so_far: str) -> None: ...
    def finish(self, answer_markdown: str, messages: Sequence[SlackMessage]) -> None:
        """Show the final answer: `messages` are its Block Kit form, split to fit Slack."""

    def fail(self, message: SlackMessage) -> None: ...


class PlaceholderReply:
    def __init__(
        self,
        client: WebClient,
        *,
        channel_id: str,
        thread_ts: str,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._channel_id = channel_id
        self._thread_ts = thread_ts
        self._interval_s = interval_s
        self._clock = clock
        self._ts: str | None = None
        self._last_edit = float("-inf")
        self._shown = ""

    @property
    def ts(self) -> str | None:
        return self._ts

    def start(self) -> None:
        response = _call(self._post, placeholder_message())
        if response is not None:
            # The first text goes out as soon as it exists; only later edits wait an interval.
            self._ts = response["ts"]

    def update(self, markdown_so_far: str) -> None:
        if self._ts is None or markdown_so_far == self._shown:
            return
        if self._clock() - self._last_edit < self._interval_s:
            return
        self._last_edit = self._clock()
        if _call(self._edit, streaming_message(markdown_so_far)) is not None:
            self._shown = markdown_so_far

    def finish(self, answer_markdown: str, messages: Sequence[SlackMessage]) -> None:
        first, *rest = messages
        self._replace_or_post(first)
        for message in rest:
            self._post(message)

    def fail(self, message: SlackMessage) -> None:
        self._replace_or_post(message)

    def _replace_or_post(self, message: SlackMessage) -> None:
        # The final edit must land: if the placeholder never got posted, or cannot be
        # edited any more, the message goes into the thread as a new one.
        if self._ts is not None and _call(self._edit, message) is not None:
            return
        self._ts = self._post(message)["ts"]

    def _post(self, message: SlackMessage) -> Any:
        return self._client.chat_postMessage(
            channel=self._channel_id,
            thread_ts=self._thread_ts,
            text=message.text,
            blocks=message.blocks,
            unfurl_links=False,
            unfurl_media=False,
        )

    def _edit(self, message: SlackMessage) -> Any:
        return self._client.chat_update(
            channel=self._channel_id, ts=self._ts, text=message.text, blocks=message.blocks
        )


class NativeStreamReply:
    def __init__(
        self,
        client: WebClient,
        *,
        channel_id: str,
        thread_ts: str,
        question_ts: str,
        team_id: str,
        user_id: str,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._channel_id = channel_id
        self._thread_ts = thread_ts
        self._question_ts = question_ts
        self._team_id = team_id
        self._user_id = user_id
        self._interval_s = interval_s
        self._clock = clock
        self._ts: str | None = None
        self._streamed = ""  # the answer's Markdown as far as Slack has it
        self._last_append = float("-inf")

    @property
    def ts(self) -> str | None:
        return self._ts

    def start(self) -> None:
        _call(
            lambda: self._client.reactions_add(
                channel=self._channel_id, timestamp=self._question_ts, name=THINKING_REACTION
            )
        )

    def update(self, markdown_so_far: str) -> None:
        if self._clock() - self._last_append < self._interval_s:
            return
        self._last_append = self._clock()
        self._stream(markdown_so_far)

    def finish(self, answer_markdown: str, messages: Sequence[SlackMessage]) -> None:
        # Slack renders the streamed Markdown itself; the quote, sources and buttons close it.
        # A stream cannot be taken back: when the final answer is not the streamed text
        # going on (it failed verification after checked sentences went out), it follows it.
        if answer_markdown.startswith(self._streamed):
            self._stream(answer_markdown)
        else:
            self._stream(f"{self._streamed}\n\n{answer_markdown}")
        self._stop(blocks=_footer_blocks(messages[-1].blocks))

    def fail(self, message: SlackMessage) -> None:
        if self._ts is None:
            _call(lambda: self._client.chat_postMessage(
                channel=self._channel_id, thread_ts=self._thread_ts,
                text=message.text, blocks=message.blocks,
            ))  # fmt: skip
        else:
            self._stop(blocks=message.blocks)
        self._clear_reaction()

    def _stream(self, markdown: str) -> None:
        new_text = markdown[len(self._streamed) :]
        if not new_text:
            return
        if self._ts is None:
            response = _call(
                lambda: self._client.chat_startStream(
                    channel=self._channel_id,
                    thread_ts=self._thread_ts,
                    recipient_team_id=self._team_id,
                    recipient_user_id=self._user_id,
                    markdown_text=new_text,
                )
            )
            if response is not None:
                self._ts = response["ts"]
                self._streamed = markdown
            return
        if _call(
            lambda: self._client.chat_appendStream(
                channel=self._channel_id, ts=self._ts, markdown_text=new_text
            )
        ):
            self._streamed = markdown

    def _stop(self, *, blocks: list[dict[str, Any]]) -> None:
        if self._ts is not None:
            _call(lambda: self._client.chat_stopStream(
                channel=self._channel_id, ts=self._ts, blocks=blocks
            ))  # fmt: skip
        self._clear_reaction()

    def _clear_reaction(self) -> None:
        _call(
            lambda: self._client.reactions_remove(
                channel=self._channel_id, timestamp=self._question_ts, name=THINKING_REACTION
            )
        )


def _footer_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What follows the answer's text: from the quote, or else the last divider, on."""
    for index, block in enumerate(blocks):
        if block.get("block_id") == QUOTE_BLOCK_ID:
            return blocks[index:]
    dividers = [index for index, block in enumerate(blocks) if block.get("type") == "divider"]
    if dividers:
        return blocks[dividers[-1] :]
    return [block for block in blocks if block.get("type") == "actions"]


def _call(request: Callable[..., Any], *args: Any) -> Any | None:
    """A Web API call whose failure is logged and survived; None when it failed."""
    try:
        return request(*args)
    except SlackApiError as error:
        logger.warning("Slack refused a call: %s", error.response.get("error", error))
        return None
