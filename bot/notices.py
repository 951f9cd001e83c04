"""Telling one person something privately, and how a failure is worded when it reaches them.

Private means visible to them only: an ephemeral message where they are (in the thread they
were in), or a direct message from the bot where there is no channel (a modal, the Home tab).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from store.errors import DispatchbotError, ErrorKind


@dataclass(frozen=True)
class Recipient:
    """One person, and where a private note reaches them."""

    client: WebClient
    user_id: str
    channel_id: str | None = None
    thread_ts: str | None = None

    @classmethod
    def of(cls, client: WebClient, body: dict[str, Any]) -> Recipient | None:
        """Who sent an event, clicked a button or submitted a modal, and where; None for
        what no person did (another bot's message, a system event)."""
        event = body.get("event")
        if isinstance(event, dict):
            user = event.get("user")
            if not isinstance(user, str) or event.get("bot_id"):
                return None
            channel = event.get("channel") if event.get("type") != "app_home_opened" else None
            return cls(client, user, _text(channel), _text(event.get("thread_ts")))
        user = (body.get("user") or {}).get("id")
        if not isinstance(user, str):
            return None
        # A click in a thread is answered in that thread; one on a top-level message (an
        # escalation card) beside it.
        thread = (body.get("message") or {}).get("thread_ts")
        return cls(client, user, _text((body.get("channel") or {}).get("id")), _text(thread))

    def tell(self, text: str) -> None:
        if self.channel_id is None:
            self.client.chat_postMessage(channel=self.user_id, text=text)
            return
        self.client.chat_postEphemeral(
            channel=self.channel_id, user=self.user_id, thread_ts=self.thread_ts, text=text
        )


def failure_notice(error: BaseException, doing: str, reference: str) -> str:
    """What a person reads when `doing` ("count your vote") failed: a refusal or bad input
    in the error's own words; an outage or a fault as an apology and a suggestion to try
    again; always with the reference the log line carries."""
    kind = error.kind if isinstance(error, DispatchbotError) else None
    if kind in (ErrorKind.REFUSED, ErrorKind.BAD_INPUT):
        return f"I couldn't {doing}: {error} (reference `{reference}`)."
    if kind is ErrorKind.UNAVAILABLE or isinstance(error, SQLAlchemyError):
        return (
            f"Sorry, I couldn't {doing}: something I depend on is unavailable right now. "
            f"Please try again in a few minutes (reference `{reference}`)."
        )
    return (
        f"Sorry, something went wrong and I couldn't {doing}. It's logged under reference "
        f"`{reference}`; please try again, or ask a dispatcher."
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
