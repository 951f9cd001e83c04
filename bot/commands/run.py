"""`dispatchbot run`: the Slack bot, over Socket Mode or HTTP."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Annotated

import typer
from pydantic import SecretStr
from rich.console import Console
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.errors import SlackApiError

from bot.app import Mode, SlackSetupError, answer_executor, check_slack_settings, create_app
from bot.commands.common import EXIT_UNAVAILABLE, command_services, fail, settings_of
from bot.commands.model import ensure_local_model
from bot.http_server import EVENTS_PATH, HEALTH_PATH, SlackHTTPServer, serve_until_stopped
from bot.reminders import ReminderScheduler

console = Console(soft_wrap=True)


def run(
    ctx: typer.Context,
    mode: Annotated[
        Mode,
        typer.Option(
            "--mode",
            help="socket: Socket Mode, no public URL needed (one process). "
            "http: Events API at /slack/events, for several replicas behind a load balancer.",
        ),
    ] = Mode.SOCKET,
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="HTTP mode port; default BOT_HTTP_PORT (3000)."
    ),
    host: str = typer.Option("0.0.0.0", "--host", help="HTTP mode address to listen on."),  # noqa: S104
) -> None:
    """Answer questions in Slack until stopped (Ctrl-C or SIGTERM).

    Running answers are finished before the process exits.
    """
    settings = settings_of(ctx)
    try:
        check_slack_settings(settings, mode)
    except SlackSetupError as error:
        fail(str(error))
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)

    executor = answer_executor(settings)
    with command_services(settings) as services:
        ensure_local_model(settings)
        try:
            app = create_app(services, mode, executor)
        except SlackSetupError as error:
            fail(str(error), EXIT_UNAVAILABLE)
        reminders = ReminderScheduler(app.client, services).start()
        try:
            if mode is Mode.HTTP:
                _serve_http(app, host, port or settings.bot_http_port)
            else:
                _serve_socket_mode(app, settings.slack_app_token)
        finally:
            console.print("Stopping: finishing the answers already under way.")
            reminders.stop()
            executor.shutdown(wait=True)


def _serve_http(app: App, host: str, port: int) -> None:
    try:
        server = SlackHTTPServer((host, port), app)
    except OSError as error:
        fail(f"cannot listen on {host}:{port} ({error.strerror}); pick another --port")
    console.print(f"dispatchbot is listening on {server.url}{EVENTS_PATH} (health: {HEALTH_PATH}).")
    serve_until_stopped(server)


def _serve_socket_mode(app: App, app_token: SecretStr | None) -> None:
    assert app_token is not None, "check_slack_settings requires it in Socket Mode"
    handler = SocketModeHandler(app, app_token.get_secret_value())
    try:
        handler.connect()
    except SlackApiError as error:
        fail(
            f"Slack refused SLACK_APP_TOKEN ({error.response.get('error')}); it needs the "
            "connections:write scope and Socket Mode turned on for the app",
            EXIT_UNAVAILABLE,
        )
    console.print("dispatchbot is connected to Slack over Socket Mode.")
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        handler.close()
