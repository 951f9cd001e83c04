"""Adapter loading against a vLLM that wants its API key on every route, as production's does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from serving.vllm_admin import AdapterError, list_served_models, load_adapter, unload_adapter

API_KEY = "sk-vllm-test-key"


class _KeyedVLLM(BaseHTTPRequestHandler):
    """/v1/models and the adapter routes, 401 without `Authorization: Bearer API_KEY`."""

    def do_GET(self) -> None:
        self._answer({"data": [{"id": "dispatch-base", "parent": None}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer({})

    def _answer(self, payload: dict) -> None:
        authorized = self.headers.get("Authorization") == f"Bearer {API_KEY}"
        body = json.dumps(payload if authorized else {"error": "Unauthorized"}).encode()
        self.send_response(200 if authorized else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def keyed_vllm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeyedVLLM)
    # Polling every 0.05 s: shutdown() waits up to one poll (0.5 s by default).
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_the_key_reaches_every_admin_route(keyed_vllm: str, tmp_path: Path) -> None:
    assert [model.id for model in list_served_models(keyed_vllm, api_key=API_KEY)] == [
        "dispatch-base"
    ]
    load_adapter(keyed_vllm, "dispatch-v2", tmp_path, api_key=API_KEY)
    unload_adapter(keyed_vllm, "dispatch-v2", api_key=API_KEY)


def test_without_the_key_the_refusal_is_explained(keyed_vllm: str, tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="HTTP 401 Unauthorized"):
        load_adapter(keyed_vllm, "dispatch-v2", tmp_path)
