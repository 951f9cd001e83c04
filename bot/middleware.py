"""Bolt middleware for what every request needs before a listener sees it."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware
from sqlalchemy.exc import SQLAlchemyError

from store import repository
from store.database import Database

logger = logging.getLogger(__name__)

REQUEST_ID = "request_id"  # context key; errors shown to users quote it


def new_request_id() -> str:
    return secrets.token_hex(4)


def assign_request_id(context: dict[str, object], next: Callable[[], BoltResponse]) -> BoltResponse:
    """Every request gets an id that its logs and any error shown to the user share."""
    context[REQUEST_ID] = new_request_id()
    return next()


class DropRepeatedEvents(Middleware):
    """Slack re-sends an event it thinks was not acknowledged (`X-Slack-Retry-Num`), and
    several bot replicas may receive the same one: the first to record its `event_id` in
    the store handles it, every later delivery is acknowledged and dropped.
    """

    def __init__(self, database: Database) -> None:
        self._database = database

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        event_id = req.body.get("event_id") if req.body.get("type") == "event_callback" else None
        if not isinstance(event_id, str):
            return next()
        try:
            with self._database.transaction() as session:
                first = repository.claim_event(session, event_id)
        except SQLAlchemyError:
            # Without the store there is no dedupe. A first delivery goes on (its answer will
            # report the outage to the user); a retry is dropped so it is not reported twice.
            logger.exception("cannot record event %s; the store is unavailable", event_id)
            first = not req.headers.get("x-slack-retry-num")
        if first:
            return next()
        logger.info(
            "dropped repeated event %s (retry %s)",
            event_id,
            (req.headers.get("x-slack-retry-num") or ["-"])[0],
        )
        return BoltResponse(status=200, body="")
