"""Reminders for escalations nobody claimed: a thread that reads their state from the store.

The state lives in SQL (reminders_sent, last_reminded_at), so a restart loses nothing: the
first scan after start-up sends whatever fell due while the bot was down. Replicas can all
run this; each reminder is taken by one of them only (see repository.take_reminder).
"""

from __future__ import annotations

import logging
import threading

from slack_sdk import WebClient

from bot.escalation import Escalations
from bot.services import Services

logger = logging.getLogger(__name__)


class ReminderScheduler:
    def __init__(self, client: WebClient, services: Services) -> None:
        self._escalations = Escalations(client, services)
        self._interval_s = services.settings.escalation_scan_interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reminders", daemon=True)

    def start(self) -> ReminderScheduler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                sent = self._escalations.send_due_reminders()
                if sent:
                    logger.info("sent %d escalation reminder(s)", sent)
            except Exception:
                # A database or Slack outage must not end the scheduler; the next scan retries.
                logger.exception("escalation reminder scan failed")
            self._stopped.wait(self._interval_s)
