"""Socket Mode: one envelope replayed through a local websocket server, acked and answered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bot_harness import MakeParts
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_mock import (
    APP_TOKEN,
    MockSlack,
    assert_valid_blocks,
    event_callback,
    has_buttons,
    mention,
)
from socket_mode_support import SocketModeServer

from bot.app import Mode, create_app


@pytest.fixture
def socket_server(mock_slack: MockSlack) -> Iterator[SocketModeServer]:
    server = SocketModeServer()
    mock_slack.socket_mode_url = server.url
    yield server
    server.close()


def test_an_envelope_over_socket_mode_is_acked_and_answered(
    make_parts: MakeParts, mock_slack: MockSlack, socket_server: SocketModeServer
) -> None:
    parts = make_parts(slack_app_token=APP_TOKEN, slack_signing_secret=None)
    question = mention("who approves a 30,000 lb load?")
    socket_server.envelopes.put(
        {
            "envelope_id": "0f1e2d3c-envelope",
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": event_callback(question),
        }
    )
    handler = SocketModeHandler(create_app(parts.services, Mode.SOCKET, parts.executor), APP_TOKEN)
    handler.connect()
    try:
        ack = socket_server.acks.get(timeout=10)
        final = mock_slack.wait_for("chat.update", has_buttons)[0]
    finally:
        handler.close()

    assert ack["envelope_id"] == "0f1e2d3c-envelope"
    opened = mock_slack.calls_to("apps.connections.open")[0]
    assert opened.args["_token"] == APP_TOKEN
    placeholder = mock_slack.calls_to("chat.postMessage")[0]
    assert placeholder.args["thread_ts"] == question["ts"]
    assert ack_arrived_first(mock_slack, placeholder.at)
    assert_valid_blocks(final.args["blocks"])


def ack_arrived_first(mock: MockSlack, placeholder_at: float) -> bool:
    """The bot connected (apps.connections.open) before it answered."""
    return mock.calls_to("apps.connections.open")[0].at < placeholder_at
