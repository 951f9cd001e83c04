"""The Bolt app: one factory that wires the Slack client, middleware and listeners."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar
from urllib.error import URLError

from pydantic import SecretStr
from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.listeners import register_listeners
from bot.metrics import CountedRateLimitRetryHandler, SlackCallObserver
from bot.middleware import assign_request_id
from bot.replay import ReplayGuard
from bot.services import Services
from store.errors import BadInput, ErrorKind
from store.settings import Settings

logger = logging.getLogger(__name__)

MANIFEST_HINT = "create the Slack app from deploy/slack-app-manifest.yml (see docs/slack-app.md)"


class Mode(StrEnum):
    SOCKET = "socket"  # outbound websocket: no public URL needed; one process
    HTTP = "http"  # Events API and interactivity at /slack/events: behind a load balancer


class SlackSetupError(BadInput):
    """The Slack side is not configured or refuses the credentials; the message says what to do."""


def required_secret(value: SecretStr | None, variable: str, what: str) -> str:
    secret = value.get_secret_value() if value else ""
    if not secret:
        raise SlackSetupError(f"{variable} is not set: it is {what}; {MANIFEST_HINT}")
    return secret


def check_slack_settings(settings: Settings, mode: Mode) -> None:
    """Fail before anything slow starts when a token the mode needs is missing."""
    required_secret(settings.slack_bot_token, "SLACK_BOT_TOKEN", "the bot token (xoxb-...)")
    if mode is Mode.HTTP:
        required_secret(
            settings.slack_signing_secret,
            "SLACK_SIGNING_SECRET",
            "the signing secret that proves requests come from Slack",
        )
    else:
        required_secret(
            settings.slack_app_token, "SLACK_APP_TOKEN", "the app-level token (xapp-...)"
        )


def slack_client(settings: Settings) -> WebClient:
    client = WebClient(
        token=required_secret(settings.slack_bot_token, "SLACK_BOT_TOKEN", "the bot token"),
        base_url=settings.slack_api_url,
        logger=logging.getLogger("dispatchbot.slack_api"),
    )
    # Every failed call is counted for /metrics first. Then a call that could not connect or
    # lost its connection, one rate-limited (HTTP 429: it waits for Retry-After) and one
    # that met Slack's 500 or 503 (backing off 0.5-1.5 s, then 1-2 s) is tried again: twice
    # at most in all, as the handlers share one attempt count. Gateway errors (502, 504) are
    # not retried, as in slack_sdk: the post may have gone through, and would show twice.
    client.retry_handlers = [
        SlackCallObserver(),
        ConnectionErrorRetryHandler(max_retry_count=2),
        CountedRateLimitRetryHandler(max_retry_count=2),
        ServerErrorRetryHandler(max_retry_count=2),
    ]
    return client


_P = ParamSpec("_P")
_T = TypeVar("_T")


class ContextCopyingExecutor(ThreadPoolExecutor):
    """Runs each task in a copy of the submitting thread's context, so a listener's log
    records carry the request id the middleware set (bot/logs.py)."""

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        context = contextvars.copy_context()
        runner: Callable[..., Any] = context.run
        return super().submit(runner, fn, *args, **kwargs)


# Listener threads beyond the answers that run at once: a question waiting for its turn
# (Services.answer_slots) holds one, having shown its status, and clicks and modals keep
# threads of their own while every answer slot is busy.
WAITING_LISTENERS = 64


def answer_executor(settings: Settings) -> ThreadPoolExecutor:
    return ContextCopyingExecutor(
        max_workers=settings.bot_answer_workers + WAITING_LISTENERS, thread_name_prefix="answer"
    )


def create_app(services: Services, mode: Mode, executor: ThreadPoolExecutor | None = None) -> App:
    """The Bolt app for `services`; calls auth.test, so the token is checked here.

    Listeners run on `executor` (by default `answer_executor`); the caller that owns it can
    wait for running answers on shutdown.
    """
    settings = services.settings
    check_slack_settings(settings, mode)
    signing_secret = (
        settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    )
    try:
        app = App(
            client=slack_client(settings),
            signing_secret=signing_secret,
            # Signatures are checked on every HTTP request; Socket Mode needs none.
            request_verification_enabled=mode is Mode.HTTP,
            listener_executor=executor or answer_executor(settings),
            logger=logging.getLogger("dispatchbot.bolt"),
            name="dispatchbot",
        )
    except BoltError as error:
        raise SlackSetupError(
            f"Slack refused SLACK_BOT_TOKEN ({error}); copy the bot token of the installed "
            "app again, and check SLACK_API_URL",
            kind=ErrorKind.UNAVAILABLE,
        ) from error
    except (URLError, OSError) as error:
        raise SlackSetupError(
            f"cannot reach Slack at {settings.slack_api_url} ({error}); check the network "
            "or SLACK_API_URL",
            kind=ErrorKind.UNAVAILABLE,
        ) from error
    # Bolt logs a rejected request's whole body at INFO, and bodies carry what people wrote.
    logging.getLogger("slack_bolt.RequestVerification").setLevel(logging.WARNING)
    app.use(assign_request_id)
    if mode is Mode.HTTP:
        # After Bolt's signature check: a signed request seen before is a replay (bot/replay.py).
        app.use(ReplayGuard().reject_replays)
    register_listeners(app, services)
    return app
