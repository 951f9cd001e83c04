"""HTTP mode: Slack's Events API and interactivity at /slack/events; and, in both modes,
the operations endpoints: GET /healthz (the process is up), /readyz (it can answer: see
bot/readiness.py) and /metrics (Prometheus).

A threaded server from the standard library: each request gets a thread, Bolt acknowledges
within milliseconds and the answers run on the app's own worker pool, so one slow answer
never holds up the acknowledgement of another event.

What cannot be a request from Slack is refused before Bolt sees it, with a 4xx and no side
effect: a wrong method or path, no Content-Length, a body over 1 MiB, shorter than its
Content-Length or not UTF-8, malformed signature headers, a body Bolt cannot read. A
client that stops sending is cut off after `request_timeout_s`, so it cannot hold a thread.
"""

from __future__ import annotations

import json
import logging
import re
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
from bot.envelope import envelope_problem
from bot.readiness import Readiness

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
# Slack's largest payloads (a modal submission, a long message event) are tens of KB.
MAX_BODY_BYTES = 1024 * 1024
# Slack sends a request in one go and gives up after 3 s; a client that sends its headers
# or body slower than this (slowloris, a Content-Length larger than the body) is dropped.
REQUEST_TIMEOUT_S = 10.0
GET_PATHS = frozenset({HEALTH_PATH, READY_PATH, METRICS_PATH})
_CONTENT_LENGTH = re.compile(r"[0-9]{1,12}")  # str.isdigit() takes "²", which int() refuses
# What Slack sends; anything else would make the signature check itself fail (int() of the
# timestamp, an ASCII-only comparison of the signature) and answer 500.
_SLACK_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SLACK_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


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
        self,
        address: tuple[str, int],
        app: App | None,
        operations: Operations | None = None,
        *,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        super().__init__(address, _SlackRequestHandler)
        self.app = app
        self.operations = operations or Operations()
        self.request_timeout_s = request_timeout_s

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str), "an IP socket's address has its host as text"
        return f"http://{host}:{port}"


class _SlackRequestHandler(BaseHTTPRequestHandler):
    server: SlackHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "dispatchbot"
    # Headers and body go out in two writes; with Nagle's algorithm the body then waits for
    # the client's delayed ACK of the headers, 40 ms on every response of a kept-alive
    # connection.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        # Every read of the request line, headers and body fails after this long instead of
        # waiting for ever (StreamRequestHandler's `timeout`, but set per server).
        self.connection.settimeout(self.server.request_timeout_s)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        operations = self.server.operations
        if path not in GET_PATHS:
            self._refuse_method(path)
        elif path == HEALTH_PATH:
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

    def do_POST(self) -> None:
        target = urlsplit(self.path)
        app = self.server.app
        if target.path != EVENTS_PATH or app is None:
            self._refuse_method(target.path)
            return
        body = self._read_body()
        if body is None:
            return
        if not self._has_wellformed_signature_headers():
            self._respond(HTTPStatus.UNAUTHORIZED, "missing or malformed Slack signature")
            return
        request = self._bolt_request(body, target.query)
        if request is None:
            return
        response = app.dispatch(request)
        headers = {name: values[0] for name, values in response.headers.items() if values}
        self._respond(response.status, response.body, extra_headers=headers)

    def do_PUT(self) -> None:
        self._refuse_method(urlsplit(self.path).path)

    do_PATCH = do_DELETE = do_PUT

    def _refuse_method(self, path: str) -> None:
        """404 for a path this server does not serve, 405 naming the method for one it does."""
        self.close_connection = True  # a body left unread must not be taken for a request
        if path in GET_PATHS:
            allowed = "GET"
        elif path == EVENTS_PATH and self.server.app is not None:
            allowed = "POST"
        else:
            self._respond(HTTPStatus.NOT_FOUND, "not found")
            return
        self._respond(
            HTTPStatus.METHOD_NOT_ALLOWED, f"use {allowed}", extra_headers={"Allow": allowed}
        )

    def _read_body(self) -> str | None:
        length_header = self.headers.get("Content-Length")
        if length_header is None or not _CONTENT_LENGTH.fullmatch(length_header):
            self.close_connection = True  # a chunked body left unread
            self._respond(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            return None
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self._respond(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            self.close_connection = True  # the unread body must not be taken for a request
            return None
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            self._respond(HTTPStatus.REQUEST_TIMEOUT, "the request body did not arrive in time")
            return None
        if len(raw) < length:  # the client closed its side before sending it all
            self.close_connection = True
            self._respond(HTTPStatus.BAD_REQUEST, "request body shorter than Content-Length")
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self._respond(HTTPStatus.BAD_REQUEST, "request body is not UTF-8")
            return None

    def _has_wellformed_signature_headers(self) -> bool:
        """Absent headers are Bolt's to refuse (401); malformed ones would make it answer 500."""
        timestamp = self.headers.get("X-Slack-Request-Timestamp")
        signature = self.headers.get("X-Slack-Signature")
        return (timestamp is None or _SLACK_TIMESTAMP.fullmatch(timestamp) is not None) and (
            signature is None or _SLACK_SIGNATURE.fullmatch(signature) is not None
        )

    def _bolt_request(self, body: str, query: str) -> BoltRequest | None:
        """The request as Bolt reads it, or None after a 400 when it is no Slack payload.

        Bolt parses the body before it checks the signature and trusts its shape: a form
        `payload` that is not JSON, a JSON array, an `event` that is a string would raise
        here or in its listener matchers (a 500). Nothing has been done with the request
        yet, so refusing it is free of side effects, signed or not.
        """
        problem: str | None
        try:
            request = BoltRequest(body=body, query=query, headers=dict(self.headers.items()))
        except (ValueError, TypeError, AttributeError, LookupError) as error:
            # json.JSONDecodeError is a ValueError; the others come from Bolt reading ids
            # out of a body of the wrong shape.
            problem = f"unreadable body ({type(error).__name__})"
        else:
            problem = envelope_problem(request.body)
            if problem is None:
                return request
        logger.info("refused a malformed Slack request: %s", problem)
        self._respond(HTTPStatus.BAD_REQUEST, f"not a Slack request: {problem}")
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
