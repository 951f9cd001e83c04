"""What the handlers of buttons and modals share: where a click came from, and its answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from store.errors import BadInput


@dataclass(frozen=True)
class ButtonClick:
    """A click on one of the answer's buttons: who, on which answer, in which thread."""

    answer_id: int
    user_id: str
    channel_id: str
    thread_ts: str
    message_ts: str
    trigger_id: str | None

    @classmethod
    def from_body(cls, body: dict[str, Any], action: dict[str, Any]) -> ButtonClick:
        """Raises BadInput when the payload is not a click on one of our answers."""
        try:
            message = body["message"]
            return cls(
                answer_id=int(action["value"]),
                user_id=str(body["user"]["id"]),
                channel_id=str(body["channel"]["id"]),
                thread_ts=str(message.get("thread_ts") or message["ts"]),
                message_ts=str(message["ts"]),
                trigger_id=body.get("trigger_id"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BadInput(f"not a click on an answer's button: {error!r}") from error
