"""What the Slack tests hold of a bot they started: the running bot, its parts, the types of
the fixtures that make them, and an executor that knows when the bot has nothing left to do.

conftest.py turns these into fixtures; test modules import the types from here (a module
named `conftest` is whichever conftest.py pytest imported last, not necessarily this
folder's).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_mock import MockSlack, SlackSender

from bot.services import Services
from store.database import Database
from store.settings import Settings

POLICIES = Path(__file__).resolve().parents[2] / "examples" / "policies"


class IdleTrackingExecutor(Executor):
    """The bot's listener executor, counting the tasks it holds, so a test can wait until
    every listener the events it sent started has finished.

    Bolt submits an event's listener and its lazy listeners to this executor before it
    acknowledges the request, so once a test's request has been answered, what it set off
    is counted; a task that submits another does so before it finishes, so the count only
    reaches zero when all of it is done. Work outside listeners (the reminder scheduler,
    the spool worker) runs on threads of its own and is not counted.
    """

    def __init__(self, inner: Executor) -> None:
        self._inner = inner
        self._running = 0
        self._changed = threading.Condition()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._changed:
            self._running += 1
        try:
            future = self._inner.submit(fn, *args, **kwargs)
        except BaseException:
            self._finished()
            raise
        future.add_done_callback(lambda _: self._finished())
        return future

    def _finished(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Return once no task is queued or running; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"the bot still had {self._running} listener task(s) after {timeout} s"
                    )
                self._changed.wait(remaining)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait, cancel_futures=cancel_futures)


@dataclass
class RunningBot:
    slack: MockSlack
    send: SlackSender
    database: Database
    settings: Settings
    url: str
    stop: Callable[[], None]  # a clean stop, as on SIGTERM (the store stays as it is)
    executor: IdleTrackingExecutor

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until every listener the requests sent so far started has finished, and so
        has reached Slack and the store with all it was going to do.

        The way a test shows that something did NOT happen: send the events, wait until the
        bot is idle, then assert on what arrived. A fixed sleep would pass too early while a
        slow model is still writing a reply that should never have been started.
        """
        self.executor.wait_idle(timeout)


@dataclass
class BotParts:
    settings: Settings
    database: Database
    services: Services
    executor: IdleTrackingExecutor


MakeParts = Callable[..., BotParts]
StartBot = Callable[..., RunningBot]
