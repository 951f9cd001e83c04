"""A local stand-in for Slack: its Web API on an ephemeral port, and correctly signed
requests to the bot, the way Slack sends them.

The mock records every Web API call (method, arguments, time) and answers the way Slack
does for the methods the bot uses; tests assert on what reached it.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from slack_sdk.models.blocks import Block
from slack_sdk.signature import SignatureVerifier

TEAM_ID = "T0DISPATCH"
BOT_USER_ID = "UBOT0001"
BOT_ID = "BBOT0001"
SIGNING_SECRET = "test-signing-secret-not-real"
BOT_TOKEN = "xoxb-test-token-not-real"
APP_TOKEN = "xapp-test-token-not-real"
# Arguments that slack_sdk sends as JSON text inside a form post.
_JSON_ARGUMENTS = ("blocks", "view", "attachments", "metadata")


@dataclass(frozen=True)
class SlackCall:
    method: str
    args: dict[str, Any]
    at: float  # time.monotonic() when it arrived
    response: dict[str, Any]


@dataclass
class MockSlack:
    """The Web API. `responses[method]` overrides the answer of a method (a dict or a
    callable of the arguments), to make Slack fail or return something particular."""

    calls: list[SlackCall] = field(default_factory=list)
    responses: dict[str, dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]] = field(
        default_factory=dict
    )
    socket_mode_url: str | None = None
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _timestamps: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def start(self) -> MockSlack:
        self._server = _WebAPIServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def calls_to(self, method: str) -> list[SlackCall]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def wait_for(
        self,
        method: str,
        matching: Callable[[SlackCall], bool] = lambda call: True,
        *,
        count: int = 1,
        timeout: float = 60.0,
    ) -> list[SlackCall]:
        """The first `count` calls to `method` that match, waiting for them to arrive."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [c for c in self.calls if c.method == method and matching(c)]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [call.method for call in self.calls]
                    raise AssertionError(
                        f"{count} call(s) to {method} did not arrive in {timeout} s; saw {seen}"
                    )
                self._lock.wait(remaining)

    def record(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        arrived = time.monotonic()
        override = self.responses.get(method)
        if override is not None:
            response = override(args) if callable(override) else override
        else:
            response = self._default_response(method, args)
        with self._lock:
            self.calls.append(SlackCall(method, args, arrived, response))
            self._lock.notify_all()
        return response

    def _default_response(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://northwind.slack.com/",
                "team": "Northwind",
                "user": "dispatchbot",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
            }
        if method in ("chat.postMessage", "chat.startStream"):
            ts = f"1800000000.{next(self._timestamps):06d}"
            return {"ok": True, "channel": args.get("channel"), "ts": ts}
        if method in ("chat.update", "chat.appendStream", "chat.stopStream"):
            return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1800000000.{next(self._timestamps):06d}"}
        if method == "chat.getPermalink":
            channel, ts = args.get("channel"), str(args.get("message_ts", "")).replace(".", "")
            return {
                "ok": True,
                "permalink": f"https://northwind.slack.com/archives/{channel}/p{ts}",
            }
        if method == "views.open":
            return {"ok": True, "view": {"id": "V0MODAL", **args["view"]}}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.socket_mode_url}
        return {"ok": True}


class _WebAPIServer(ThreadingHTTPServer):
    # A bot answering 50 questions at once opens more connections than the default backlog
    # of 5 holds; the real Web API does not refuse them, so neither does the mock.
    request_queue_size = 128


def _handler_for(mock: MockSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            method = self.path.removeprefix("/api/").split("?")[0]
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if "json" in (self.headers.get("Content-Type") or ""):
                args: dict[str, Any] = json.loads(raw or "{}")
            else:
                args = dict(parse_qsl(raw, keep_blank_values=True))
            for name in _JSON_ARGUMENTS:
                if isinstance(args.get(name), str) and args[name]:
                    args[name] = json.loads(args[name])
            args["_token"] = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            response = mock.record(method, args)
            # `_http_status` and `_retry_after` in a response make the mock fail at the HTTP
            # level, as Slack does for rate limits (429 with Retry-After) and outages (5xx).
            status = int(response.get("_http_status", 200))
            body = json.dumps({k: v for k, v in response.items() if not k.startswith("_")})
            self.send_response(status)
            if "_retry_after" in response:
                self.send_header("Retry-After", str(response["_retry_after"]))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body.encode())))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


# --- requests from Slack to the bot ------------------------------------------------------

_event_ids = itertools.count(1)
_message_ts = itertools.count(1)


def next_ts() -> str:
    return f"1700000000.{next(_message_ts):06d}"


def event_callback(event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "api_app_id": "A0DISPATCH",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_event_ids):08d}",
        "event_time": int(time.time()),
        "authorizations": [
            {"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True, "enterprise_id": None}
        ],
    }


def mention(text: str, *, channel: str = "C0DISPATCH", user: str = "U0ALICE", **extra: Any) -> dict:
    ts = extra.pop("ts", None) or next_ts()
    return {
        "type": "app_mention",
        "user": user,
        "text": f"<@{BOT_USER_ID}> {text}",
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": TEAM_ID,
        **extra,
    }


def message(
    text: str, *, channel: str = "C0DISPATCH", user: str = "U0ALICE", **extra: Any
) -> dict[str, Any]:
    ts = extra.pop("ts", None) or next_ts()
    return {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": TEAM_ID,
        "channel_type": "im" if channel.startswith("D") else "channel",
        **extra,
    }


def app_home_opened(*, user: str = "U0ALICE", tab: str = "home") -> dict[str, Any]:
    """The user opened the app's Home tab (or its Messages tab, with tab="messages")."""
    return {
        "type": "app_home_opened",
        "user": user,
        "channel": "D0DISPATCH",
        "tab": tab,
        "event_ts": next_ts(),
    }


def block_action(
    action_id: str,
    value: str,
    *,
    channel: str,
    message_ts: str,
    thread_ts: str,
    user: str = "U0ALICE",
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "northwind"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0DISPATCH",
        "token": "legacy-verification-token",
        "trigger_id": f"trigger-{next(_event_ids)}",
        "channel": {"id": channel, "name": "dispatch"},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "message": {"type": "message", "ts": message_ts, "thread_ts": thread_ts, "text": ""},
        "response_url": "https://hooks.slack.invalid/actions/T0/1/x",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": f"answer:{value}",
                "value": value,
                "action_ts": str(time.time()),
            }
        ],
    }


def view_submission(view: dict[str, Any], values: dict[str, Any], *, user: str) -> dict:
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "northwind"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0DISPATCH",
        "token": "legacy-verification-token",
        "trigger_id": f"trigger-{next(_event_ids)}",
        "view": {**view, "id": "V0MODAL", "state": {"values": values}},
    }


@dataclass
class SlackSender:
    """Posts to the bot's /slack/events as Slack does: signed, JSON events, form payloads.

    Slack signs each delivery when it sends it, retries included, so no two deliveries
    carry the same timestamp and signature (the bot refuses a pair it has seen as a
    replay); a body sent again within the same second is stamped a second later.
    """

    events_url: str
    secret: str = SIGNING_SECRET
    _last_stamp: dict[str, int] = field(default_factory=dict, repr=False)

    def event(
        self, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.post(json.dumps(payload), "application/json", headers or {})

    def interaction(self, payload: dict[str, Any]) -> httpx.Response:
        body = urlencode({"payload": json.dumps(payload)})
        return self.post(body, "application/x-www-form-urlencoded", {})

    def post(
        self,
        body: str,
        content_type: str,
        headers: dict[str, str],
        *,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        stamp = str(timestamp if timestamp is not None else self._fresh_stamp(body))
        signed = signature or SignatureVerifier(self.secret).generate_signature(
            timestamp=stamp, body=body
        )
        request_headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signed,
            **headers,
        }
        return httpx.post(self.events_url, content=body, headers=request_headers, timeout=10)

    def _fresh_stamp(self, body: str) -> int:
        stamp = max(int(time.time()), self._last_stamp.get(body, 0) + 1)
        self._last_stamp[body] = stamp
        return stamp


# --- what the bot posted -----------------------------------------------------------------


def assert_valid_blocks(blocks: list[dict[str, Any]]) -> None:
    """Slack's own models accept every block, within Slack's limits."""
    assert 0 < len(blocks) <= 50
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, f"slack_sdk does not know this block: {block}"
        parsed.validate_json()


def has_buttons(call: SlackCall) -> bool:
    return any(block.get("type") == "actions" for block in call.args.get("blocks") or [])


def block_text(call: SlackCall) -> str:
    """All the text a reader sees in a message's blocks."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                parts.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(call.args.get("blocks") or [])
    return "\n".join(parts)
