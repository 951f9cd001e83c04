"""/readyz: a replica reports ready only when it can answer, and says what is missing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bot_harness import StartBot
from pydantic import SecretStr
from vllm_support import BASE_MODEL, MODELS_DIR, SocketServer

from bot.http_server import EVENTS_PATH, READY_PATH, Operations, SlackHTTPServer
from bot.readiness import REUSE_S, Readiness, database_check, model_check, qdrant_check
from bot.services import open_services
from retrieval.chunking import ChunkingOptions
from retrieval.edge_store import EdgeStore
from retrieval.embedding import load_embedder_for
from retrieval.ingest import ingest_files
from store import schema
from store.database import Database
from store.settings import Settings

POLICIES = Path(__file__).resolve().parents[2] / "examples" / "policies"

TIMEOUT_S = 1.0
API_KEY = "sk-not-a-real-key"


def readyz(base_url: str) -> tuple[int, dict]:
    response = httpx.get(f"{base_url}{READY_PATH}", timeout=10)
    return response.status_code, response.json()


def test_a_bot_with_everything_up_is_ready(start_bot: StartBot) -> None:
    bot = start_bot()

    status, report = readyz(bot.url)

    assert status == 200
    assert report["status"] == "ready"
    assert set(report["checks"]) == {"database", "qdrant", "model"}
    assert all(check["ok"] for check in report["checks"].values())
    assert BASE_MODEL in report["checks"]["model"]["detail"]


def test_a_model_endpoint_that_is_down_makes_the_bot_unready(
    start_bot: StartBot, dead_endpoint: str
) -> None:
    bot = start_bot(endpoints=[dead_endpoint])

    status, report = readyz(bot.url)

    assert status == 503
    assert report["status"] == "unready"
    assert report["checks"]["model"]["ok"] is False
    assert dead_endpoint in report["checks"]["model"]["detail"]
    assert report["checks"]["database"]["ok"]
    assert report["checks"]["qdrant"]["ok"]


def test_an_endpoint_that_does_not_serve_the_model_makes_the_bot_unready(
    start_bot: StartBot,
) -> None:
    bot = start_bot(llm_model="northwind-dispatch-8b")

    status, report = readyz(bot.url)

    assert status == 503
    assert "does not serve northwind-dispatch-8b" in report["checks"]["model"]["detail"]


@pytest.fixture
def ops_server_with_nothing_working(silent_endpoint: SocketServer, tmp_path: Path) -> Iterator[str]:
    """Only the operations endpoints (as in Socket Mode), over a store nobody listens for,
    an empty policy store and a model endpoint that never answers."""
    unreachable = Database("postgresql+psycopg://dispatchbot@127.0.0.1:9/dispatchbot")
    policies = EdgeStore(tmp_path / "edge", "policies")
    readiness = Readiness(
        {
            "database": database_check(unreachable),
            "qdrant": qdrant_check(policies),
            "model": model_check([silent_endpoint.url], BASE_MODEL, SecretStr(API_KEY), TIMEOUT_S),
        },
        TIMEOUT_S,
    )
    server = SlackHTTPServer(("127.0.0.1", 0), None, Operations(readiness))
    # Polling every 0.05 s: shutdown() waits up to one poll (0.5 s by default).
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.url
    server.shutdown()
    server.server_close()
    policies.close()
    unreachable.dispose()


def test_each_failing_dependency_is_named_within_the_timeout(
    ops_server_with_nothing_working: str,
) -> None:
    started = time.monotonic()
    status, report = readyz(ops_server_with_nothing_working)
    took = time.monotonic() - started

    assert status == 503
    checks = report["checks"]
    assert not any(check["ok"] for check in checks.values())
    assert "OperationalError" in checks["database"]["detail"]
    assert "run `dispatchbot ingest`" in checks["qdrant"]["detail"]
    assert API_KEY not in str(report)
    # The silent model endpoint is abandoned at the timeout; the probe does not hang on it.
    assert took < TIMEOUT_S + 3


def test_an_operations_only_server_takes_no_slack_events(
    ops_server_with_nothing_working: str,
) -> None:
    response = httpx.post(f"{ops_server_with_nothing_working}{EVENTS_PATH}", content=b"{}")

    assert response.status_code == 404


def test_checks_run_once_a_second_however_often_the_probe_comes() -> None:
    runs: list[float] = []

    def counted() -> str:
        runs.append(time.monotonic())
        return "fine"

    readiness = Readiness({"database": counted}, timeout_s=1.0)
    reports = [readiness.report() for _ in range(20)]

    assert len(runs) == 1
    assert all(report.ready for report in reports)
    time.sleep(1.1)
    readiness.report()
    assert len(runs) == 2


def test_a_check_that_raises_is_reported_not_raised() -> None:
    def broken() -> str:
        raise RuntimeError("disk full")

    report = Readiness({"qdrant": broken}, timeout_s=1.0).report()

    assert not report.ready
    assert report.as_json()["checks"]["qdrant"]["detail"] == "RuntimeError: disk full"


def test_a_bot_started_before_the_first_ingest_is_ready_once_it_is_done(
    tmp_path: Path, model_endpoint: str
) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        models_dir=MODELS_DIR,
        llm_base_url=model_endpoint,
        llm_model=BASE_MODEL,
    )
    database = Database(settings.database_url)
    schema.upgrade(database)
    database.dispose()

    with open_services(settings, wait_for_ingest=True) as services:
        readiness = Readiness.of(services)
        before = readiness.report()
        ingest_files(
            [POLICIES / "load-approval.md"],
            store=services.search.store,
            embedder=load_embedder_for(settings),
            chunking=ChunkingOptions(max_tokens=256, overlap_tokens=32),
        )
        time.sleep(REUSE_S)
        after = readiness.report()

    assert not before.ready
    assert "run `dispatchbot ingest`" in before.checks["qdrant"].detail
    assert before.checks["database"].ok
    assert after.ready
