"""Answers the questions waiting in the spool once the store takes writes again.

A thread like the reminders': it looks at the spool every few seconds and, while the store
still refuses, waits longer each time (doubling up to a ceiling). Each question is answered
once: its event id is claimed in the store first (so a late Slack retry of the event is
dropped), a question already recorded is only taken off the spool (answered before a crash,
or by another delivery), and a question leaves the spool only after it was answered.
"""

from __future__ import annotations

import logging
import threading

from slack_sdk import WebClient
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.listeners.questions import replay_spooled
from bot.logs import bind_request_id
from bot.services import Services
from bot.spool import QuestionSpool, SpooledQuestion
from store import repository
from store.models import Conversation, Message

logger = logging.getLogger(__name__)


class SpoolWorker:
    def __init__(
        self,
        client: WebClient,
        services: Services,
        *,
        poll_s: float = 2.0,
        first_retry_s: float = 1.0,
        max_retry_s: float = 30.0,
    ) -> None:
        self._client = client
        self._services = services
        self._spool = QuestionSpool.of(services.settings)
        self._poll_s = poll_s
        self._first_retry_s = first_retry_s
        self._max_retry_s = max_retry_s
        self._deferred: set[str] = set()  # questions another delivery may be answering
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool", daemon=True)

    def start(self) -> SpoolWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        retry_s = self._first_retry_s
        while not self._stopped.is_set():
            try:
                caught_up = self.answer_pending()
            except Exception:
                # Slack or the disk failing must not end the worker; the next round retries.
                logger.exception("answering the spooled questions failed")
                caught_up = False
            if caught_up:
                retry_s = self._first_retry_s
                self._stopped.wait(self._poll_s)
            else:
                self._stopped.wait(retry_s)
                retry_s = min(retry_s * 2, self._max_retry_s)

    def answer_pending(self) -> bool:
        """Answer the spooled questions, oldest first; False when the store still refuses."""
        for spooled in self._spool.pending():
            if self._stopped.is_set() or not self._answer(spooled):
                return False
        return True

    def _answer(self, spooled: SpooledQuestion) -> bool:
        bind_request_id(spooled.request_id)
        try:
            with self._services.database.transaction() as session:
                claimed = repository.claim_event(session, spooled.key)
                recorded = _recorded(session, spooled)
        except SQLAlchemyError as error:
            logger.warning(
                "the store is still unavailable (%s); questions wait in %s",
                type(error).__name__,
                self._spool.path,
            )
            return False
        if recorded:
            self._spool.done(spooled.key)
            return True
        if not claimed and spooled.key not in self._deferred:
            # The delivery that kept it claimed the event before the store failed, or a
            # retry of the event is being answered right now: look again next round.
            self._deferred.add(spooled.key)
            return True
        if not replay_spooled(spooled, self._client, self._services):
            return False
        self._deferred.discard(spooled.key)
        self._spool.done(spooled.key)
        logger.info("took up a question kept since %s", spooled.spooled_at)
        return True


def _recorded(session: Session, spooled: SpooledQuestion) -> bool:
    """Whether the store holds the spooled message: the bot took it up already."""
    event = spooled.event
    found = session.scalar(
        select(Message.id)
        .join(Conversation, Message.conversation_id == Conversation.id)
        .where(
            Conversation.team_id == spooled.team_id,
            Conversation.channel_id == event.get("channel"),
            Conversation.thread_ts == (event.get("thread_ts") or event.get("ts")),
            Message.slack_ts == event.get("ts"),
        )
        .limit(1)
    )
    return found is not None
