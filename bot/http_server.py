"""HTTP mode: Slack's Events API and interactivity at /slack/events; and, in both modes,
the operations endpoints: GET /healthz (the process is up), /readyz (it can answer: see
bot/readiness.py) and /metrics (Prometheus).

A threaded server from the standard library: each request gets a thread, Bolt acknowledges
within milliseconds and the answers run on the app's own worker pool, so one slow answer
never holds up the acknowledgement of another event.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import urlsplit

from prometheus_client.registry import Collector
from slack_bolt import App, BoltRequest

from bot import metrics
from bot.readiness import Readiness

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
# Slack's largest payloads (a modal submission, a long message event) are tens of KB.
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Operations:
    """What the GET endpoints report; without `readiness`, /readyz checks nothing."""

    readiness: Readiness | None = None
    collectors: Sequence[Collector] = field(default_factory=tuple)


class SlackHTTPServer(ThreadingHTTPServer):
    """Serves Slack's requests to `app` (None: the operations endpoints only, as in Socket
    Mode, where nothing may post events to a process that does not check signatures)."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 made the kernel drop connections when 50 events
    # arrived at once (acks of 1-4 s, see bench/slack_load.py); Slack retries what is late.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], app: App | None, operations: Operations | None = None
    ) -> None:
        super().__init__(address, _SlackRequestHandler)
        self.app = app
        self.operations = operations or Operations()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _SlackRequestHandler(BaseHTTPRequestHandler):
    server: SlackHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "dispatchbot"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        operations = self.server.operations
        if path == HEALTH_PATH:
            self._respond(HTTPStatus.OK, json.dumps({"status": "ok"}), "application/json")
        elif path == READY_PATH:
            readiness = operations.readiness
            if readiness is None:
                self._respond(HTTPStatus.OK, json.dumps({"status": "ready", "checks": {}}))
                return
            report = readiness.report()
            status = HTTPStatus.OK if report.ready else HTTPStatus.SERVICE_UNAVAILABLE
            self._respond(status, json.dumps(report.as_json()), "application/json")
        elif path == METRICS_PATH:
            body = metrics.render(*operations.collectors).decode("utf-8")
            self._respond(HTTPStatus.OK, body, metrics.CONTENT_TYPE)
        else:
            self._respond(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:
        target = urlsplit(self.path)
        app = self.server.app
        if target.path != EVENTS_PATH or app is None:
            self._respond(HTTPStatus.NOT_FOUND, "not found")
            return
        body = self._read_body()
        if body is None:
            return
        request = BoltRequest(body=body, query=target.query, headers=dict(self.headers.items()))
        response = app.dispatch(request)
        headers = {name: values[0] for name, values in response.headers.items() if values}
        self._respond(response.status, response.body, extra_headers=headers)

    def _read_body(self) -> str | None:
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self._respond(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            return None
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self._respond(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            self.close_connection = True  # the unread body must not be taken for a request
            return None
        try:
            return self.rfile.read(length).decode("utf-8")
        except UnicodeDecodeError:
            self._respond(HTTPStatus.BAD_REQUEST, "request body is not UTF-8")
            return None

    def _respond(
        self,
        status: int,
        body: str,
        content_type: str = "text/plain; charset=utf-8",
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        payload = body.encode("utf-8")
        headers = {"content-type": content_type}
        headers.update((name.lower(), value) for name, value in (extra_headers or {}).items())
        headers["content-length"] = str(len(payload))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


def serve_in_background(server: SlackHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread


def stop_serving(server: SlackHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def wait_for_termination() -> None:
    """Block until SIGTERM (Kubernetes, docker stop) or Ctrl-C."""
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
