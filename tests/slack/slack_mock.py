"""A local stand-in for Slack: its Web API on an ephemeral port, and correctly signed
requests to the bot, the way Slack sends them.

The mock records every Web API call (method, arguments, time) and answers the way Slack
does for the methods the bot uses; tests assert on what reached it. Like Slack it
- keeps each method within its rate tier per workspace (chat.postMessage and
  chat.startStream: about one a second per channel), answering past it with HTTP 429 and
  `Retry-After`; a tier is a minute's calls, and bursts up to it are allowed;
- checks the streaming methods' arguments (recipient ids in channels, known chunks, a
  message still streaming) and answers with Slack's errors;
- can refuse a method for a kind of channel (`refuse`), as a workspace without the agent
  features does.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from slack_sdk.models.blocks import Block
from slack_sdk.models.messages.chunk import Chunk
from slack_sdk.signature import SignatureVerifier

TEAM_ID = "T0DISPATCH"
BOT_USER_ID = "UBOT0001"
BOT_ID = "BBOT0001"
SIGNING_SECRET = "test-signing-secret-not-real"
BOT_TOKEN = "xoxb-test-token-not-real"
APP_TOKEN = "xapp-test-token-not-real"
# Arguments that slack_sdk sends as JSON text inside a form post.
_JSON_ARGUMENTS = ("blocks", "view", "attachments", "metadata", "chunks", "prompts")

# Calls a minute per workspace, by the tier Slack's method reference gives each method.
TIER_PER_MINUTE = {1: 1, 2: 20, 3: 50, 4: 100}
METHOD_TIERS = {
    "assistant.threads.setStatus": 4,
    "assistant.threads.setSuggestedPrompts": 4,
    "chat.appendStream": 4,
    "chat.delete": 3,
    "chat.getPermalink": 4,
    "chat.postEphemeral": 4,
    "chat.stopStream": 4,
    "chat.update": 3,
    "conversations.info": 3,
    "reactions.add": 3,
    "reactions.remove": 2,
    "usergroups.users.list": 2,
    "users.info": 4,
    "views.open": 4,
    "views.publish": 4,
    "views.update": 4,
}
# Methods that post a new message: about one a second in each channel.
PER_CHANNEL_PER_MINUTE = {"chat.postMessage": 60, "chat.startStream": 60}
MARKDOWN_TEXT_LIMIT = 12_000


def channel_type(channel_id: str) -> str:
    return {"D": "im", "G": "group"}.get(channel_id[:1], "channel")


@dataclass
class _Tier:
    """A minute's allowance of one method, refilled evenly."""

    per_minute: int
    tokens: float
    at: float

    def take(self, now: float) -> float:
        """0 when the call may go (and it is counted), else seconds until it may."""
        self.tokens = min(self.per_minute, self.tokens + (now - self.at) * self.per_minute / 60)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) * 60 / self.per_minute


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
    enforce_tiers: bool = True
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _timestamps: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _tiers: dict[tuple[str, str], _Tier] = field(default_factory=dict)
    _refused: dict[tuple[str, str], str] = field(default_factory=dict)
    _streaming: set[str] = field(default_factory=set)  # messages still streaming

    def start(self) -> MockSlack:
        self._server = _WebAPIServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # Polling every 0.05 s: shutdown() waits up to one poll (0.5 s by default).
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def refuse(self, method: str, channel_kind: str, error: str) -> None:
        """Answer `method` in channels of this kind (im, channel, group) with `error`."""
        self._refused[(method, channel_kind)] = error

    def rate_limited(self) -> list[SlackCall]:
        """The calls answered with HTTP 429."""
        with self._lock:
            return [call for call in self.calls if call.response.get("_http_status") == 429]

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
        limited = self._over_tier(method, args, arrived)
        if limited is not None:
            response = limited
        elif override is not None:
            response = override(args) if callable(override) else override
        else:
            response = self._checked(method, args) or self._default_response(method, args)
        with self._lock:
            self.calls.append(SlackCall(method, args, arrived, response))
            self._lock.notify_all()
        return response

    def _over_tier(self, method: str, args: dict[str, Any], now: float) -> dict[str, Any] | None:
        if not self.enforce_tiers:
            return None
        if method in PER_CHANNEL_PER_MINUTE:
            key, per_minute = (method, str(args.get("channel"))), PER_CHANNEL_PER_MINUTE[method]
        elif method in METHOD_TIERS:
            key, per_minute = (method, TEAM_ID), TIER_PER_MINUTE[METHOD_TIERS[method]]
        else:
            return None
        with self._lock:
            tier = self._tiers.setdefault(key, _Tier(per_minute, per_minute, now))
            wait_s = tier.take(now)
        if not wait_s:
            return None
        return {"ok": False, "error": "ratelimited", "_http_status": 429, "_retry_after": max(
            1, round(wait_s + 0.5)
        )}  # fmt: skip

    def _checked(self, method: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """Slack's error for a call it would refuse; None when the call is good."""
        channel = str(args.get("channel") or args.get("channel_id") or "")
        refused = self._refused.get((method, channel_type(channel)))
        if refused is not None:
            return {"ok": False, "error": refused}
        if method == "chat.startStream":
            if not args.get("thread_ts"):
                return {"ok": False, "error": "invalid_arguments"}
            if channel_type(channel) != "im" and not args.get("recipient_user_id"):
                return {"ok": False, "error": "missing_recipient_user_id"}
            if channel_type(channel) != "im" and not args.get("recipient_team_id"):
                return {"ok": False, "error": "missing_recipient_team_id"}
        if method in ("chat.appendStream", "chat.stopStream"):
            with self._lock:
                if str(args.get("ts")) not in self._streaming:
                    return {"ok": False, "error": "message_not_in_streaming_state"}
        if method in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
            return _stream_content_error(args)
        return None

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
            if method == "chat.startStream":
                with self._lock:
                    self._streaming.add(ts)
            return {"ok": True, "channel": args.get("channel"), "ts": ts}
        if method == "chat.stopStream":
            with self._lock:
                self._streaming.discard(str(args.get("ts")))
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


def _stream_content_error(args: dict[str, Any]) -> dict[str, Any] | None:
    chunks = args.get("chunks") or []
    if not isinstance(chunks, list) or not all(isinstance(chunk, dict) for chunk in chunks):
        return {"ok": False, "error": "invalid_chunks"}
    for chunk in chunks:
        parsed = Chunk.parse(chunk)
        if parsed is None:
            return {"ok": False, "error": "invalid_chunks"}
        if chunk.get("type") == "task_update" and chunk.get("status") not in (
            "pending", "in_progress", "complete", "error"
        ):  # fmt: skip
            return {"ok": False, "error": "invalid_chunks"}
    texts = [str(args.get("markdown_text") or "")]
    texts += [
        str(chunk.get("text", "")) for chunk in chunks if chunk.get("type") == "markdown_text"
    ]
    if any(len(text) > MARKDOWN_TEXT_LIMIT for text in texts):
        return {"ok": False, "error": "msg_too_long"}
    blocks = args.get("blocks") or []
    if len(blocks) > 50:
        return {"ok": False, "error": "msg_blocks_too_many"}
    return None


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
            if response.get("_drop"):
                # As a timeout or a lost connection looks to the client: no answer at all.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
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
    action_type: str = "button",
    block_id: str | None = None,
) -> dict[str, Any]:
    """A click on an element of a message: a button, or one of Slack's feedback buttons
    (action_type "feedback_buttons", whose value is the clicked button's)."""
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
                "type": action_type,
                "action_id": action_id,
                "block_id": block_id or f"answer:{value}",
                "value": value,
                "action_ts": str(time.time()),
            }
        ],
    }


def feedback_click(
    posted: SlackCall, vote: int, *, user: str = "U0ALICE", thread_ts: str | None = None
) -> dict[str, Any]:
    """A click on Slack's 👍 (vote 1) or 👎 (-1) under a message the bot posted or stopped."""
    block = next(b for b in posted.args["blocks"] if b["type"] == "context_actions")
    [feedback] = block["elements"]
    button = feedback["positive_button" if vote > 0 else "negative_button"]
    return block_action(
        feedback["action_id"],
        button["value"],
        channel=str(posted.args["channel"]),
        message_ts=str(posted.args["ts"]),
        thread_ts=thread_ts or str(posted.args["ts"]),
        user=user,
        action_type="feedback_buttons",
        block_id=block["block_id"],
    )


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


def streamed_markdown(calls: list[SlackCall]) -> str:
    """The Markdown a streamed message received, in order, from its start to its stop."""
    parts: list[str] = []
    for call in calls:
        if call.method not in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
            continue
        parts.append(str(call.args.get("markdown_text") or ""))
        for chunk in call.args.get("chunks") or []:
            if chunk.get("type") == "markdown_text":
                parts.append(str(chunk.get("text", "")))
    return "".join(parts)


def stream_steps(calls: list[SlackCall]) -> list[dict[str, Any]]:
    """Every task_update chunk the bot streamed, in order."""
    return [
        chunk
        for call in calls
        if call.method in ("chat.startStream", "chat.appendStream", "chat.stopStream")
        for chunk in call.args.get("chunks") or []
        if chunk.get("type") == "task_update"
    ]
