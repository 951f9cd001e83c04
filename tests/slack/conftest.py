"""The bot as Slack meets it: the real Bolt app over real HTTP, the real assistant (the
embedded policy store, the real embedder, the model at `model_endpoint`: the real vLLM in a
full run, the canned stand-in in the fast tier; a real store), and a mock Slack Web API."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bot_harness import POLICIES, BotParts, IdleTrackingExecutor, MakeParts, RunningBot, StartBot
from policy_store_support import ingested_search
from slack_mock import BOT_TOKEN, SIGNING_SECRET, MockSlack, SlackSender
from vllm_support import BASE_MODEL, make_client

from bot.app import Mode, answer_executor, create_app
from bot.http_server import EVENTS_PATH, Operations, SlackHTTPServer
from bot.metrics import EscalationBacklog, SpoolBacklog
from bot.readiness import Readiness
from bot.reminders import ReminderScheduler
from bot.services import Services
from bot.spool import QuestionSpool
from bot.spool_worker import SpoolWorker
from retrieval.search import PolicySearch
from serving.assistant import Assistant, AssistantSettings
from store import schema
from store.database import Database
from store.settings import Settings

CORPUS = ["load-approval.md", "service-slas.md", "hazmat-handling.md", "ticket-priorities.md"]


@pytest.fixture(scope="session")
def policy_search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicySearch]:
    corpus = [POLICIES / name for name in CORPUS]
    with ingested_search(tmp_path_factory.mktemp("store"), corpus) as search:
        yield search


@pytest.fixture
def mock_slack() -> Iterator[MockSlack]:
    mock = MockSlack().start()
    yield mock
    mock.stop()


@pytest.fixture
def make_parts(
    mock_slack: MockSlack,
    policy_search: PolicySearch,
    sqlite_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[MakeParts]:
    """What the bot runs on: settings pointing at the mock Slack, a migrated store, the
    assistant on `model_endpoint`. Keyword arguments override settings; `endpoints` (then no
    model is started), `read_timeout_s`, `database_url` and `search` pick the model endpoints
    and how long to wait for them, the store and the policy search; `sampling` goes with
    every model request (vllm_support.forced_answer makes the model write a given text)."""
    made: list[BotParts] = []

    def make(
        *,
        endpoints: list[str] | None = None,
        read_timeout_s: float = 60,
        database_url: str | None = None,
        search: PolicySearch | None = None,
        max_tokens: int = 48,
        sampling: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> BotParts:
        # The model starts (once per session) only for a bot that uses it.
        if endpoints is None:
            endpoints = [request.getfixturevalue("model_endpoint")]
        values: dict[str, Any] = {
            "data_dir": tmp_path,  # the spool of questions the store could not take
            "database_url": database_url or sqlite_url,
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": mock_slack.api_url,
            "slack_update_interval_s": 0.3,
            # These tests read answers from the placeholder Slack edits (the path every
            # workspace has); tests/slack/test_agent_experience.py starts bots with the
            # default, Slack's agent methods.
            "slack_native_streaming": False,
            # What /readyz checks; the assistant itself uses `endpoints`.
            "llm_base_url": endpoints[0],
            "llm_model": BASE_MODEL,
            # Every channel may read the sample policies for dispatchers and service agents
            # (the corpus above); tests of restricted audiences set their own.
            "audience_default": ["dispatch", "service"],
        }
        settings = Settings(_env_file=None, **(values | overrides))
        database = Database(settings.database_url)
        schema.upgrade(database)
        assistant = Assistant(
            search=search or policy_search,
            model=make_client(
                endpoints,
                max_tokens=max_tokens,
                read_timeout_s=read_timeout_s,
                sampling=sampling,
            ),
            database=database,
            settings=AssistantSettings(k=4, min_relevance=0.30, reserved_for_answer=max_tokens),
        )
        parts = BotParts(
            settings,
            database,
            Services(settings, database, assistant, search or policy_search),
            IdleTrackingExecutor(answer_executor(settings)),
        )
        made.append(parts)
        return parts

    yield make
    for parts in made:
        parts.executor.shutdown(wait=True)  # answers under way finish before the store closes
        parts.database.dispose()


@pytest.fixture
def start_bot(mock_slack: MockSlack, make_parts: MakeParts) -> Iterator[StartBot]:
    """Start the bot in HTTP mode on a free port (arguments: those of `make_parts`)."""
    stops: list[Callable[[], None]] = []

    def start(**options: Any) -> RunningBot:
        parts = make_parts(**options)
        app = create_app(parts.services, Mode.HTTP, parts.executor)
        backlogs = [
            EscalationBacklog(parts.database),
            SpoolBacklog(QuestionSpool.of(parts.settings)),
        ]
        operations = Operations(Readiness.of(parts.services), backlogs)
        server = SlackHTTPServer(("127.0.0.1", 0), app, operations)
        # Polling every 0.05 s: shutdown() waits up to one poll (0.5 s by default).
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        scheduler = ReminderScheduler(app.client, parts.services).start()
        spool_worker = SpoolWorker(
            app.client, parts.services, poll_s=0.3, first_retry_s=0.3, max_retry_s=1.0
        ).start()
        stopped = threading.Event()

        def stop() -> None:
            if not stopped.is_set():
                stopped.set()
                scheduler.stop()
                spool_worker.stop()
                server.shutdown()
                server.server_close()
                parts.executor.shutdown(wait=True)

        stops.append(stop)
        return RunningBot(
            slack=mock_slack,
            send=SlackSender(server.url + EVENTS_PATH),
            database=parts.database,
            settings=parts.settings,
            url=server.url,
            stop=stop,
            executor=parts.executor,
        )

    yield start
    for stop in stops:
        stop()
