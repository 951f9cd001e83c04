"""`dispatchbot run`: the Slack bot, over Socket Mode or HTTP."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from pydantic import SecretStr
from rich.console import Console
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.errors import SlackApiError

from bot.app import Mode, answer_executor, check_slack_settings, create_app
from bot.commands.common import EXIT_UNAVAILABLE, command_services, fail, settings_of
from bot.commands.model import ensure_local_model
from bot.http_server import (
    EVENTS_PATH,
    HEALTH_PATH,
    METRICS_PATH,
    READY_PATH,
    Operations,
    SlackHTTPServer,
    serve_in_background,
    stop_serving,
    wait_for_termination,
)
from bot.metrics import EscalationBacklog, SpoolBacklog
from bot.policy_admin import PolicyAdminServer, admin_socket
from bot.readiness import Readiness
from bot.reminders import ReminderScheduler
from bot.services import Services
from bot.spool import QuestionSpool
from bot.spool_worker import SpoolWorker

console = Console(soft_wrap=True)


def run(
    ctx: typer.Context,
    mode: Annotated[
        Mode,
        typer.Option(
            "--mode",
            help="socket: Socket Mode, no public URL needed; run ONE process. "
            "http: Events API at /slack/events, for several replicas behind a load balancer.",
        ),
    ] = Mode.SOCKET,
    port: int | None = typer.Option(
        None,
        "--port",
        min=1,
        max=65535,
        help="Port of /slack/events (HTTP mode) and of /healthz, /readyz and /metrics "
        "(both modes); default BOT_HTTP_PORT (3000).",
    ),
    host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on."),  # noqa: S104
) -> None:
    """Answer questions in Slack until stopped (Ctrl-C or SIGTERM).

    Running answers are finished before the process exits.
    """
    settings = settings_of(ctx)
    check_slack_settings(settings, mode)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)

    executor = answer_executor(settings)
    # A bot started before the first ingest (a new deployment) waits for it, unready: on a
    # server any process may ingest; the embedded store takes ingests through this bot.
    with command_services(settings, wait_for_ingest=True) as services:
        ensure_local_model(settings)
        app = create_app(services, mode, executor)
        backlogs = [EscalationBacklog(services.database), SpoolBacklog(QuestionSpool.of(settings))]
        operations = Operations(Readiness.of(services), backlogs)
        # Socket Mode takes events over its websocket: this server must not accept any.
        server = _listen(
            app if mode is Mode.HTTP else None, operations, host, port or settings.bot_http_port
        )
        policy_changes = _accept_policy_changes(services)
        reminders = ReminderScheduler(app.client, services).start()
        # Questions kept on disk while the store was down are answered once it is back.
        spooled = SpoolWorker(app.client, services).start()
        try:
            serve_in_background(server)
            if mode is Mode.HTTP:
                console.print(f"dispatchbot is listening on {server.url}{EVENTS_PATH}.")
                wait_for_termination()
            else:
                _serve_socket_mode(app, settings.slack_app_token)
        finally:
            console.print("Stopping: finishing the answers already under way.")
            stop_serving(server)
            reminders.stop()
            spooled.stop()
            if policy_changes:
                policy_changes.stop()
            executor.shutdown(wait=True)


def _accept_policy_changes(services: Services) -> PolicyAdminServer | None:
    """With the embedded store, `dispatchbot ingest` reaches this process: start its socket."""
    if services.settings.qdrant_url:
        return None  # on a server, ingest writes to the collection itself; replicas see it
    search = services.search
    path = admin_socket(services.settings)
    server = PolicyAdminServer(
        path, search.store, search.embedder, services.settings, services.database
    ).start()
    console.print(f"Policy changes from `dispatchbot ingest` are applied live (via {path}).")
    return server


def _listen(app: App | None, operations: Operations, host: str, port: int) -> SlackHTTPServer:
    try:
        server = SlackHTTPServer((host, port), app, operations)
    except OSError as error:
        fail(f"cannot listen on {host}:{port} ({error.strerror}); pick another --port")
    console.print(
        f"Operations endpoints on {server.url}: {HEALTH_PATH}, {READY_PATH}, {METRICS_PATH}."
    )
    return server


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
    try:
        wait_for_termination()
    finally:
        handler.close()
