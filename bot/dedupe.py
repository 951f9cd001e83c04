"""Each Slack event is handled once, however often it is delivered.

Slack re-sends an event it thinks was not acknowledged (`X-Slack-Retry-Num`), and several
bot replicas may receive the same one: the first to record its `event_id` in the store
handles it, every later delivery is dropped. The check runs after the ack, in the lazy
listener: with 50 events at once, SQLite's one writer made a check before the ack the
largest part of the ack time (p99 300 ms, 1.2 s on an idle burst; bench/slack_load.py).
"""

from __future__ import annotations

import logging

from slack_bolt import BoltRequest
from sqlalchemy.exc import SQLAlchemyError

from bot.metrics import SLACK_EVENTS
from store import repository
from store.database import Database

logger = logging.getLogger(__name__)


def first_delivery(database: Database, request: BoltRequest) -> bool:
    """True for the first delivery of an event (and for anything that is not an event)."""
    body = request.body
    event_id = body.get("event_id") if body.get("type") == "event_callback" else None
    if not isinstance(event_id, str):
        return True
    retries = request.headers.get("x-slack-retry-num")
    retry = retries[0] if retries else None
    try:
        with database.transaction() as session:
            first = repository.claim_event(session, event_id)
    except SQLAlchemyError:
        # Without the store there is no dedupe. A first delivery goes on (answering keeps
        # the question in the spool and tells the user so); a retry is dropped, so it is not
        # kept twice. The spool worker claims the event once the store is back.
        logger.exception("cannot record event %s; the store is unavailable", event_id)
        first = retry is None
    if first:
        SLACK_EVENTS.labels("handled").inc()
    else:
        SLACK_EVENTS.labels("duplicate").inc()
        logger.info("dropped repeated event %s (retry %s)", event_id, retry or "-")
    return first
