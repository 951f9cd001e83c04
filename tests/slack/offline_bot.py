"""The bot in HTTP mode for tests of what should never reach the model: bad, hostile and
random requests. The real Bolt app, store and HTTP server, a mock Slack; the model
endpoint is a closed port, so a request that did get through to an answer ends in an
apology instead of waiting for a model (and no vLLM is started for these tests)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bot_harness import IdleTrackingExecutor
from slack_mock import BOT_TOKEN, SIGNING_SECRET, MockSlack, SlackSender
from sqlalchemy import func, select
from vllm_support import BASE_MODEL, free_port, make_client

from bot.app import Mode, answer_executor, create_app
from bot.http_server import EVENTS_PATH, SlackHTTPServer
from bot.services import Services
from retrieval.search import PolicySearch
from serving.assistant import Assistant, AssistantSettings
from store import schema
from store.database import Database
from store.models import Base
from store.settings import Settings


@dataclass
class OfflineBot:
    slack: MockSlack
    send: SlackSender
    database: Database
    url: str
    address: tuple[str, int]
    executor: IdleTrackingExecutor

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every listener the requests so far started has finished: then what
        they were going to do to Slack or the store is done (see RunningBot.wait_idle)."""
        self.executor.wait_idle(timeout)

    def side_effects(self) -> tuple[list[str], dict[str, int]]:
        """What the bot has done so far: its Web API calls, and the rows in each table."""
        with self.database.transaction() as session:
            rows = {
                table.name: session.scalar(select(func.count()).select_from(table)) or 0
                for table in Base.metadata.sorted_tables
            }
        return [call.method for call in self.slack.calls], rows

    def connect(self, timeout_s: float = 5.0) -> socket.socket:
        """A raw connection to the bot's port, for requests no HTTP client would send."""
        return socket.create_connection(self.address, timeout=timeout_s)


@contextmanager
def offline_bot(
    data_dir: Path, search: PolicySearch, *, request_timeout_s: float = 1.0
) -> Iterator[OfflineBot]:
    slack = MockSlack().start()
    dead_model = f"http://127.0.0.1:{free_port()}/v1"
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'dispatchbot.db'}",
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.api_url,
        llm_base_url=dead_model,
        llm_model=BASE_MODEL,
    )
    database = Database(settings.database_url)
    schema.upgrade(database)
    assistant = Assistant(
        search=search,
        model=make_client([dead_model], max_tokens=16, connect_timeout_s=0.5),
        database=database,
        settings=AssistantSettings(k=4, min_relevance=0.30, reserved_for_answer=16),
    )
    executor = IdleTrackingExecutor(answer_executor(settings))
    app = create_app(Services(settings, database, assistant, search), Mode.HTTP, executor)
    server = SlackHTTPServer(("127.0.0.1", 0), app, request_timeout_s=request_timeout_s)
    # A short poll: shutting the server down at the end of a module then takes no time.
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        host, port = server.server_address[:2]
        yield OfflineBot(
            slack,
            SlackSender(server.url + EVENTS_PATH),
            database,
            server.url,
            (str(host), port),
            executor,
        )
    finally:
        server.shutdown()
        server.server_close()
        executor.shutdown(wait=True)
        database.dispose()
        slack.stop()
