"""Bolt middleware for what every request needs before a listener sees it."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from slack_bolt import BoltResponse

logger = logging.getLogger(__name__)

REQUEST_ID = "request_id"  # context key; errors shown to users quote it


def new_request_id() -> str:
    return secrets.token_hex(4)


def assign_request_id(context: dict[str, object], next: Callable[[], BoltResponse]) -> BoltResponse:
    """Every request gets an id that its logs and any error shown to the user share."""
    context[REQUEST_ID] = new_request_id()
    return next()
