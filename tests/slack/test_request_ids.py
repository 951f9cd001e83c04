"""JSON logs: every record of a request carries the id that the user's error message quotes."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from bot_harness import StartBot
from slack_mock import BOT_TOKEN, SIGNING_SECRET, block_text, event_callback, mention

from bot.logs import log_handler

QUESTION = "who approves a 30,000 lb load for customer jane.doe@example.com?"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger's records at INFO, as LOG_FORMAT=json writes them."""
    stream = io.StringIO()
    handler = log_handler("json", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_the_reference_in_an_error_finds_its_log_records(
    start_bot: StartBot, dead_endpoint: str, json_log: io.StringIO
) -> None:
    bot = start_bot(endpoints=[dead_endpoint])

    bot.send.event(event_callback(mention(QUESTION)))
    apology = bot.slack.wait_for("chat.update", lambda call: "reference `" in block_text(call))[0]
    reference = re.search(r"reference `([^`]+)`", block_text(apology)).group(1)  # type: ignore[union-attr]

    logged = records(json_log)
    mine = [record for record in logged if record.get("request_id") == reference]
    failure = next(record for record in mine if record["level"] == "ERROR")
    assert "could not answer" in failure["message"]
    assert "ModelUnavailable" in failure["exception"]
    assert {"ts", "level", "logger", "message"} <= failure.keys()
    # Records of other requests carry their own ids, never this one.
    assert all(record.get("request_id") in (None, reference) for record in mine)


def test_json_logs_hold_no_message_text_or_secrets_at_info(
    start_bot: StartBot, json_log: io.StringIO
) -> None:
    bot = start_bot()

    bot.send.event(event_callback(mention(QUESTION)))
    bot.slack.wait_for("chat.update", lambda call: "actions" in str(call.args.get("blocks")))

    logged = records(json_log)
    answered = next(record for record in logged if record["message"].startswith("answered "))
    assert answered["request_id"]
    text = json_log.getvalue()
    assert "jane.doe@example.com" not in text
    assert "30,000 lb" not in text
    assert BOT_TOKEN not in text
    assert SIGNING_SECRET not in text
