"""Bolt middleware for what every request needs before a listener sees it."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from slack_bolt import BoltResponse

from bot.logs import bind_request_id

logger = logging.getLogger(__name__)

REQUEST_ID = "request_id"  # context key; errors shown to users quote it


def new_request_id() -> str:
    return secrets.token_hex(4)


def assign_request_id(context: dict[str, object], next: Callable[[], BoltResponse]) -> BoltResponse:
    """Every request gets an id that its logs and any error shown to the user share.

    Bolt starts the listeners after the middleware has returned, so the id stays set for
    the rest of the request's thread (the next request on it sets its own); the answer
    executor copies it into the listener's thread.
    """
    request_id = new_request_id()
    context[REQUEST_ID] = request_id
    bind_request_id(request_id)
    return next()
