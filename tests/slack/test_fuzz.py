"""Random requests at /slack/events: random bytes, random JSON, form payloads and events
with random types for the keys the bot reads. Whatever arrives, the server answers (never
500, never a dropped connection), keeps answering, an unsigned request does nothing, and no
listener fails on it (a payload that is not what Slack sends is bad input, told as such).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from offline_bot import OfflineBot, offline_bot
from slack_mock import BOT_USER_ID, SIGNING_SECRET, app_home_opened, event_callback

from bot.blocks import ASK_PERSON, FEEDBACK_DOWN, FEEDBACK_REASON_VIEW, FEEDBACK_UP
from bot.escalation_blocks import ESCALATION_CLAIM, ESCALATION_RESOLVE, RESOLVE_VIEW
from retrieval.search import PolicySearch

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
# Values the bot's code looks for, so that random payloads reach its listeners.
ids = st.sampled_from(["U0ALICE", BOT_USER_ID, "C0DISPATCH", "D0ALICE", "T0DISPATCH", ""])
known_ids = st.sampled_from(
    [FEEDBACK_UP, FEEDBACK_DOWN, ASK_PERSON, ESCALATION_CLAIM, ESCALATION_RESOLVE]
)
anything = json_values | ids | st.sampled_from(["1", "-1", "1700000000.000001", "home"])
event_types = st.sampled_from(["app_mention", "message", "app_home_opened"])
# Slack ids, timestamps and text in the places Slack puts them, or anything else there.
# Mostly text where Slack puts text, so that some events are questions the bot takes.
texts = ids | st.text(max_size=30) | anything
events = st.fixed_dictionaries(
    {
        "type": event_types | json_values,
        "user": texts, "text": texts, "channel": texts, "ts": texts,
    },
    optional={
        key: anything
        for key in (
            "thread_ts", "event_ts", "channel_type", "subtype", "bot_id", "tab", "team",
            "message", "blocks",
        )
    },
)  # fmt: skip
actions = st.fixed_dictionaries(
    {"action_id": known_ids | json_values},
    optional={"value": anything, "block_id": anything, "type": anything},
)
views = st.fixed_dictionaries(
    {"callback_id": st.sampled_from([FEEDBACK_REASON_VIEW, RESOLVE_VIEW]) | json_values},
    optional={"private_metadata": anything, "state": json_values, "id": anything},
)
envelopes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["event_callback", "block_actions", "view_submission", "url_verification"]
        )
        | json_values
    },
    optional={
        "event": events | json_values,
        "event_id": anything,
        "actions": st.lists(actions, max_size=2) | json_values,
        "view": views | json_values,
        "user": st.fixed_dictionaries({"id": anything}) | anything,
        "channel": st.fixed_dictionaries({"id": anything}) | anything,
        "team": st.fixed_dictionaries({"id": anything}) | anything,
        "message": st.fixed_dictionaries({"ts": anything, "thread_ts": anything}) | anything,
        "team_id": anything,
        "trigger_id": anything,
        "authorizations": json_values,
        "challenge": anything,
    },
)


def as_json(payload: Any) -> tuple[bytes, str]:
    return json.dumps(payload).encode(), JSON


def as_form(payload: Any) -> tuple[bytes, str]:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return urlencode({"payload": raw}).encode(), FORM


bodies = st.one_of(
    st.tuples(st.binary(max_size=300), st.sampled_from([JSON, FORM, "text/plain"])),
    (json_values | envelopes).map(as_json),
    (envelopes | json_values | st.text(max_size=40)).map(as_form),
    events.map(lambda event: as_json(event_callback(event))),
)


@pytest.fixture(scope="module")
def bot(
    tmp_path_factory: pytest.TempPathFactory, policy_search: PolicySearch
) -> Iterator[OfflineBot]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    with offline_bot(data_dir, policy_search) as running:
        yield running


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:  # one connection pool: hundreds of requests
        yield client


def signature_headers(body: bytes, *, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Slack's v0 signature, over the raw bytes (slack_sdk's signer takes only UTF-8)."""
    stamp = str(int(time.time()))
    base = b"v0:" + stamp.encode() + b":" + body
    signature = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={signature}"}


FORGERIES = {
    "none": lambda body: {},
    "another secret": lambda body: signature_headers(body, secret="not-the-secret"),
    "malformed": lambda body: {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0"},
}


def test_random_unsigned_requests_are_refused_and_do_nothing(
    bot: OfflineBot, http: httpx.Client
) -> None:
    before = bot.side_effects()
    calls_before = before[0]

    @FUZZ
    @given(body=bodies, forgery=st.sampled_from(sorted(FORGERIES)))
    def send(body: tuple[bytes, str], forgery: str) -> None:
        content, content_type = body
        headers = {"Content-Type": content_type, **FORGERIES[forgery](content)}
        response = http.post(bot.send.events_url, content=content, headers=headers)
        assert response.status_code in (400, 401), response.text
        assert [call.method for call in bot.slack.calls] == calls_before

    send()
    bot.wait_idle()
    assert bot.side_effects() == before


def listener_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Listeners that failed on something other than bad input: each is a bug (a payload
    Slack could send that the bot does not handle), though the person was told."""
    return [
        f"{record.getMessage()}\n{record.exc_text or ''}"
        for record in caplog.records
        if record.name in ("bot.listeners.registry", "dispatchbot.bolt")
        and record.levelno >= logging.ERROR
    ]


def test_random_signed_requests_never_get_a_500_and_the_bot_keeps_working(
    bot: OfflineBot, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    statuses: set[int] = set()

    @FUZZ
    @given(body=bodies)
    def send(body: tuple[bytes, str]) -> None:
        content, content_type = body
        headers = {"Content-Type": content_type, **signature_headers(content)}
        # A replay (the same body in the same second) gets 401: that is fine too.
        response = http.post(bot.send.events_url, content=content, headers=headers)
        assert response.status_code < 500, response.text
        statuses.add(response.status_code)

    send()
    bot.wait_idle()

    assert statuses >= {200, 400, 404}  # the fuzz reached the listeners, and past them
    assert listener_failures(caplog) == []
    assert http.get(bot.url + "/healthz").json() == {"status": "ok"}
    # The listeners' worker pool still works: an App Home opened is published.
    publishes = len(bot.slack.calls_to("views.publish"))
    assert bot.send.event(event_callback(app_home_opened())).status_code == 200
    bot.slack.wait_for("views.publish", count=publishes + 1, timeout=10)
