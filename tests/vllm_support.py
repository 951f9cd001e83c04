"""Helpers of the tests that use the model: the test server's settings, a client factory,
and socket servers that stand in for broken endpoints. conftest.py turns them into fixtures."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from serving.llm_client import ModelClient
from serving.local_vllm import ServeOutcome
from serving.routing import AdapterRouter
from store.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
VLLM_VENV = REPO_ROOT / ".venv-vllm"
MODELS_DIR = REPO_ROOT / "var" / "models"
BASE_MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    """A port nothing listens on (the OS just handed it out and it was closed again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def local_settings(data_dir: Path, port: int, **overrides: object) -> Settings:
    return Settings(
        _env_file=None,  # the developer's .env must not steer the test server
        data_dir=data_dir,
        models_dir=MODELS_DIR,
        vllm_venv=VLLM_VENV,
        vllm_local_port=port,
        llm_model=BASE_MODEL,
        **overrides,
    )


def make_client(
    endpoints: list[str],
    *,
    routes: Mapping[str, str] | None = None,
    connect_timeout_s: float = 2.0,
    read_timeout_s: float = 30.0,
    max_tokens: int = 48,
    promoted: Callable[[], str | None] | None = None,
    sampling: Mapping[str, Any] | None = None,
    served_at: Callable[[str], str | None] | None = None,
) -> ModelClient:
    return ModelClient(
        endpoints,
        router=AdapterRouter(routes or {}, BASE_MODEL, promoted, served_at),
        api_key=SecretStr("EMPTY"),
        connect_timeout_s=connect_timeout_s,
        read_timeout_s=read_timeout_s,
        max_tokens=max_tokens,
        sampling=sampling,
    )


def forced_answer(text: str) -> dict[str, Any]:
    """vLLM's structured outputs, so the real model writes exactly `text` (a test cannot
    wait for a 135M model to invent a number, or to get one right)."""
    return {"structured_outputs": {"regex": re.escape(text)}}


@dataclass(frozen=True)
class RunningServer:
    settings: Settings
    outcome: ServeOutcome

    @property
    def base_url(self) -> str:
        return self.outcome.record.base_url


class SocketServer:
    """Accepts connections and handles each with `respond` in a thread; closed at teardown."""

    def __init__(self, respond: Callable[[socket.socket], None]) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self._respond = respond
        self._connections: list[socket.socket] = []
        self._stop = threading.Event()
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.requests += 1
            self._connections.append(connection)
            threading.Thread(target=self._respond, args=(connection,), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for connection in self._connections:
            connection.close()


class CannedChatServer:
    """An OpenAI-compatible chat endpoint that streams fixed text and records each request,
    for behaviour a real model cannot be made to show on demand (running into the limit)."""

    def __init__(self, chunks: list[str], finish_reason: str = "stop") -> None:
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(chunks, finish_reason))
        self._server.daemon_threads = True
        # Polling every 0.05 s: shutdown() waits up to one poll (0.5 s by default).
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self, chunks: list[str], finish_reason: str) -> type[BaseHTTPRequestHandler]:
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                requests.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for index, text in enumerate(chunks):
                    last = index == len(chunks) - 1
                    self.wfile.write(_sse_chunk(text, finish_reason if last else None))
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def _sse_chunk(text: str, finish_reason: str | None) -> bytes:
    chunk = {
        "id": "canned",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": BASE_MODEL,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()
