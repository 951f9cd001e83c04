"""Requests that are not Slack's, or not as Slack sends them: each gets its 4xx and does
nothing, no Web API call and no row in the store. (Unsigned, stale and wrongly signed
events, unknown paths and bodies over 1 MiB: see test_questions.py.)

Every refused request carries a body that would have had an effect (an App Home opened:
a `views.publish`), so one that slipped through would show.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from offline_bot import OfflineBot, offline_bot
from slack_mock import (
    SIGNING_SECRET,
    app_home_opened,
    block_action,
    event_callback,
    mention,
    message,
)
from slack_sdk.signature import SignatureVerifier

from bot.replay import ReplayGuard
from retrieval.search import PolicySearch

TIMEOUT_S = 0.5  # the server's request timeout in these tests
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def bot(
    tmp_path_factory: pytest.TempPathFactory, policy_search: PolicySearch
) -> Iterator[OfflineBot]:
    data_dir: Path = tmp_path_factory.mktemp("bad-requests")
    with offline_bot(data_dir, policy_search, request_timeout_s=TIMEOUT_S) as running:
        yield running


def home_opened() -> str:
    return json.dumps(event_callback(app_home_opened()))


def signature(body: str, timestamp: int) -> str:
    return SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=str(timestamp), body=body)


def form(payload: object) -> str:
    return urlencode({"payload": payload if isinstance(payload, str) else json.dumps(payload)})


def click(**changes: object) -> dict[str, object]:
    payload = block_action(
        "feedback_up", "1", channel="C0DISPATCH", message_ts="1.1", thread_ts="1.1"
    )
    return {**payload, **changes}


def without_event(payload: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in payload.items() if key != "event"}


Send = Callable[[OfflineBot], httpx.Response]


def signed(body: str, content_type: str = JSON, **headers: str) -> Send:
    return lambda bot: bot.send.post(body, content_type, headers)


def plain(method: str, path: str, body: str | bytes = b"", **headers: str) -> Send:
    return lambda bot: httpx.request(method, bot.url + path, content=body, headers=headers)


# (what is sent, the status it gets). Statuses from Bolt are kept where they are already
# 4xx (404 for a request no listener takes); what would make Bolt raise is refused with
# 400 before it reads the body.
REFUSED: dict[str, tuple[Send, int]] = {
    "GET on the events path": (plain("GET", "/slack/events"), 405),
    "PUT on the events path": (plain("PUT", "/slack/events", home_opened()), 405),
    "POST to the health check": (plain("POST", "/healthz", home_opened()), 405),
    "DELETE on the metrics": (plain("DELETE", "/metrics"), 405),
    "POST to another path": (plain("POST", "/slack/commands", home_opened()), 404),
    "no signature headers": (plain("POST", "/slack/events", home_opened()), 401),
    "a timestamp that is no number": (
        signed(home_opened(), **{"X-Slack-Request-Timestamp": "1.7e9"}),
        401,
    ),
    "a signature that is not hex": (
        signed(home_opened(), **{"X-Slack-Signature": "v0=" + "zz" * 32}),
        401,
    ),
    "a timestamp six minutes ahead": (
        lambda bot: bot.send.post(home_opened(), JSON, {}, timestamp=int(time.time()) + 360),
        401,
    ),
    "a body that is not UTF-8": (plain("POST", "/slack/events", b'{"type": "\xff"}'), 400),
    "a signed body over 1 MiB": (signed(" " * (1024 * 1024) + home_opened()), 413),
    # Signed by Slack's secret, but no payload Slack sends.
    "a JSON array": (signed("[" + home_opened() + "]"), 400),
    "JSON cut short": (signed(home_opened()[:-5]), 400),
    "text that is not JSON": (signed("app_home_opened", "text/plain"), 404),
    "an event_callback without an event": (
        signed(json.dumps(without_event(event_callback(app_home_opened())))),
        404,
    ),
    "an event that is text": (
        signed(json.dumps({**event_callback(app_home_opened()), "event": "app_home_opened"})),
        400,
    ),
    "an event type that is a number": (
        signed(json.dumps(event_callback({**app_home_opened(), "type": 7}))),
        400,
    ),
    "an unknown payload type": (signed(json.dumps({"type": "something_new"})), 404),
    "authorizations that are text": (
        signed(json.dumps({**event_callback(app_home_opened()), "authorizations": "x"})),
        400,
    ),
    "a form payload that is not JSON": (signed(form("{not json"), FORM), 400),
    "a click whose actions are an object": (signed(form(click(actions={"x": 1})), FORM), 400),
    "a click without actions": (signed(form(click(actions=[])), FORM), 400),
    "a click whose action has no action_id": (
        signed(form(click(actions=[{"type": "button", "value": "1"}])), FORM),
        400,
    ),
    "a modal whose view has no type": (
        signed(form({"type": "view_submission", "view": {"callback_id": "feedback_reason"}}), FORM),
        400,
    ),
    "a modal whose view is text": (
        signed(form({"type": "view_submission", "view": "feedback_reason"}), FORM),
        400,
    ),
}


def test_requests_slack_would_never_send_are_refused_without_side_effects(
    bot: OfflineBot,
) -> None:
    before = bot.side_effects()

    got = {name: send(bot).status_code for name, (send, _) in REFUSED.items()}

    assert got == {name: status for name, (_, status) in REFUSED.items()}
    bot.wait_idle()
    assert bot.side_effects() == before
    assert httpx.get(bot.url + "/slack/events").headers["allow"] == "POST"
    assert httpx.post(bot.url + "/healthz").headers["allow"] == "GET"


def test_the_same_bodies_unsigned_are_refused_too(bot: OfflineBot) -> None:
    before = bot.side_effects()
    bodies = [
        (home_opened(), JSON),
        ("[]", JSON),
        (home_opened()[:-5], JSON),
        (form(click()), FORM),
        (form("{not json"), FORM),
    ]

    statuses = [
        httpx.post(bot.send.events_url, content=body, headers={"Content-Type": kind}).status_code
        for body, kind in bodies
    ]

    # Readable bodies fail the signature check; unreadable ones are refused before it.
    assert statuses == [401, 400, 400, 401, 400]
    bot.wait_idle()
    assert bot.side_effects() == before


def test_signed_events_with_fields_of_the_wrong_type_are_ignored_without_an_error(
    bot: OfflineBot, caplog: pytest.LogCaptureFixture
) -> None:
    calls = len(bot.slack.calls)
    odd = [
        message("a question", subtype=["thread_broadcast"]),
        message("a question", subtype={"type": "x"}),
        mention("a question", user={"id": "U0ALICE"}),
        {**app_home_opened(), "user": None},
        {key: value for key, value in app_home_opened().items() if key != "user"},
    ]

    with caplog.at_level(logging.ERROR):
        statuses = [bot.send.event(event_callback(event)).status_code for event in odd]
        bot.wait_idle()

    assert statuses == [200] * len(odd)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert len(bot.slack.calls) == calls
    assert bot.side_effects()[1]["messages"] == 0


# --- replays ---------------------------------------------------------------------------


def test_a_replayed_request_is_refused_and_does_nothing(bot: OfflineBot) -> None:
    body, stamp = home_opened(), int(time.time())
    headers = {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": signature(body, stamp)}
    publishes = len(bot.slack.calls_to("views.publish"))

    first = httpx.post(bot.send.events_url, content=body, headers={"Content-Type": JSON, **headers})
    bot.slack.wait_for("views.publish", count=publishes + 1)
    replayed = [
        httpx.post(bot.send.events_url, content=body, headers={"Content-Type": JSON, **headers})
        for _ in range(2)
    ]
    # The retry header is not signed: adding it does not make a replay a retry.
    retry_header = httpx.post(
        bot.send.events_url,
        content=body,
        headers={"Content-Type": JSON, "X-Slack-Retry-Num": "1", **headers},
    )

    assert first.status_code == 200
    assert [r.status_code for r in (*replayed, retry_header)] == [401, 401, 401]
    bot.wait_idle()
    assert len(bot.slack.calls_to("views.publish")) == publishes + 1


def test_slacks_own_retries_are_signed_anew_and_pass(bot: OfflineBot) -> None:
    body, stamp = home_opened(), int(time.time())
    publishes = len(bot.slack.calls_to("views.publish"))

    first = bot.send.post(body, JSON, {}, timestamp=stamp)
    retries = [
        bot.send.post(body, JSON, {"X-Slack-Retry-Num": str(n)}, timestamp=stamp + n)
        for n in (1, 2)
    ]

    assert [r.status_code for r in (first, *retries)] == [200, 200, 200]
    # App Home events are not deduplicated: each delivery publishes the view again.
    bot.slack.wait_for("views.publish", count=publishes + 3)


def test_the_replay_memory_is_thread_safe_bounded_and_forgets_after_the_window() -> None:
    now = [1_000.0]
    guard = ReplayGuard(capacity=3, clock=lambda: now[0])
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(guard.first_sight("1000", "v0=a")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 7 + [True]
    for n in range(3):  # pushes the oldest pair out
        assert guard.first_sight("1000", f"v0=b{n}")
    assert guard.first_sight("1000", "v0=a")
    assert not guard.first_sight("1000", "v0=b2")
    now[0] += 301  # Bolt would refuse the timestamp now; the pair is forgotten
    assert guard.first_sight("1000", "v0=b2")


# --- connections that lie or stall -----------------------------------------------------


def statuses_then_close(connection: socket.socket) -> list[int]:
    """The statuses of the server's responses once it has closed the connection; raises
    TimeoutError if it does not close it within the socket's timeout."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return [int(status) for status in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]


def post_head(length: str, extra: str = "") -> bytes:
    return (
        f"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: {JSON}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode("latin-1")


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (
            b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\n\r\n",
            411,
        ),
        (post_head("\u00b2") + b"{}", 411),  # "²".isdigit(), but int("²") fails
        (post_head("9" * 5000) + b"{}", 411),
    ],
)
def test_a_missing_or_malformed_content_length_is_refused(
    bot: OfflineBot, head: bytes, status: int
) -> None:
    with bot.connect() as connection:
        connection.sendall(head)
        assert statuses_then_close(connection) == [status]


@pytest.mark.parametrize(
    "head",
    [
        "POST /slack/commands HTTP/1.1",  # 404
        "PUT /slack/events HTTP/1.1",  # 405
        "POST /healthz HTTP/1.1",  # 405
    ],
)
def test_the_body_of_a_refused_request_is_not_read_as_another_request(
    bot: OfflineBot, head: str
) -> None:
    smuggled = "GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n"
    request = f"{head}\r\nHost: bot\r\nContent-Length: {len(smuggled)}\r\n\r\n{smuggled}"

    with bot.connect() as connection:
        connection.sendall(request.encode())
        statuses = statuses_then_close(connection)

    assert len(statuses) == 1
    assert statuses[0] in (404, 405)


def test_a_client_that_stops_sending_is_cut_off(bot: OfflineBot) -> None:
    before = bot.side_effects()
    body = home_opened()
    stalled = {
        "headers": b"POST /slack/events HTTP/1.1\r\nHost: bot\r\n",
        "body": post_head(str(len(body) + 100)) + body.encode(),
    }
    connections = {name: bot.connect() for name in [*stalled, "hung up"]}
    started = time.monotonic()
    for name, data in stalled.items():
        connections[name].sendall(data)
    # This one says the body is longer than it is, then closes its side.
    connections["hung up"].sendall(stalled["body"])
    connections["hung up"].shutdown(socket.SHUT_WR)

    assert httpx.get(bot.url + "/healthz").status_code == 200  # meanwhile, others are served
    outcomes = {name: statuses_then_close(connection) for name, connection in connections.items()}
    took = time.monotonic() - started
    for connection in connections.values():
        connection.close()

    assert outcomes == {"headers": [], "body": [408], "hung up": [400]}
    assert took < TIMEOUT_S + 2
    assert bot.side_effects() == before


def test_a_body_longer_than_its_content_length_is_not_taken_for_the_next_request(
    bot: OfflineBot,
) -> None:
    before = bot.side_effects()
    event, stamp = home_opened(), int(time.time())
    body = event + " " * 20  # still JSON when cut after the event
    signed_headers = (
        f"X-Slack-Request-Timestamp: {stamp}\r\nX-Slack-Signature: {signature(body, stamp)}\r\n"
    )

    with bot.connect() as connection:
        # The signature covers the whole body; the server reads only what the header says,
        # and the rest is no request of its own.
        connection.sendall(post_head(str(len(event)), signed_headers) + body.encode())
        statuses = statuses_then_close(connection)

    assert statuses == [401]
    bot.wait_idle()
    assert bot.side_effects() == before
