"""Stand-ins that let a test break what the bot depends on, and mend it again, while the bot
keeps running: a TCP gate in front of a server, and a Qdrant REST server over an in-memory
collection (no Qdrant server runs in the tests)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from qdrant_client import QdrantClient, models


class Gate:
    """Forwards TCP connections to `upstream` while open. Shut, it drops every connection it
    carries and every new one at once (the server is down); held, it accepts connections and
    never answers (the server hangs)."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._state = "open"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def open(self) -> None:
        self._set("open")

    def shut(self) -> None:
        self._set("shut")

    def hold(self) -> None:
        self._set("hold")

    def close(self) -> None:
        self._set("shut")
        self._listener.close()

    def _set(self, state: str) -> None:
        with self._lock:
            self._state = state
            carried, self._sockets = self._sockets, []
        for carried_socket in carried:
            _close(carried_socket)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                state = self._state
            if state == "shut":
                _close(client)
                continue
            if state == "hold":
                with self._lock:
                    self._sockets.append(client)
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    _close(source)
    _close(target)


def _close(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other side
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()


class QdrantStandIn:
    """Qdrant's REST `points/query` over a local client, for QdrantClient(url=...)."""

    _QUERY = re.compile(r"^/collections/([^/]+)/points/query")

    def __init__(self, local: QdrantClient) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(local))
        self._server.daemon_threads = True
        # Polling every 0.05 s: shutdown() waits up to one poll (0.5 s by default).
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self, local: QdrantClient) -> type[BaseHTTPRequestHandler]:
        query_path = self._QUERY

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                match = query_path.match(self.path)
                if match is None:
                    self._reply(404, {"status": {"error": f"not here: {self.path}"}})
                    return
                request = models.QueryRequest.model_validate_json(body)
                found = local.query_points(
                    match.group(1),
                    query=request.query,
                    using=request.using,
                    prefetch=request.prefetch,
                    query_filter=request.filter,
                    limit=request.limit or 10,
                    with_payload=request.with_payload,
                    with_vectors=request.with_vector or False,
                )
                self._reply(
                    200, {"result": found.model_dump(mode="json"), "status": "ok", "time": 0.0}
                )

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
