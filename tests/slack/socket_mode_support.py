"""Slack's side of Socket Mode, on a local websocket server."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

from websockets.sync.server import Server, ServerConnection, serve


class SocketModeServer:
    """Slack's side of Socket Mode: says hello, sends queued envelopes, collects the acks."""

    def __init__(self) -> None:
        self.envelopes: queue.Queue[dict[str, Any]] = queue.Queue()
        self.acks: queue.Queue[dict[str, Any]] = queue.Queue()
        self._server: Server = serve(self._session, "127.0.0.1", 0)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/link/?ticket=test"

    def _session(self, connection: ServerConnection) -> None:
        connection.send(json.dumps({"type": "hello", "num_connections": 1}))
        connection.send(json.dumps(self.envelopes.get(timeout=30)))
        for message in connection:
            self.acks.put(json.loads(message))

    def close(self) -> None:
        self._server.shutdown()
