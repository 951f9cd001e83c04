"""Secrets stay secret: tokens, the signing secret and API keys never reach the logs (at any
level), the messages people see, or the store, through answers, failures and probes."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest
from bot_harness import RunningBot, StartBot
from slack_mock import (
    BOT_TOKEN,
    SIGNING_SECRET,
    block_action,
    event_callback,
    has_buttons,
    mention,
)
from sqlalchemy import MetaData, select

from bot.blocks import FEEDBACK_UP
from bot.logs import log_handler

LLM_API_KEY = "sk-llm-key-must-not-leak"
SECRETS = (BOT_TOKEN, SIGNING_SECRET, LLM_API_KEY)


@pytest.fixture
def every_log_record() -> Iterator[io.StringIO]:
    """All records at DEBUG, in both formats, as an operator chasing a problem would log."""
    stream = io.StringIO()
    handlers = [log_handler("text", stream), log_handler("json", stream)]
    root = logging.getLogger()
    level = root.level
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(level)


def _store_text(bot: RunningBot) -> str:
    """Every value of every row of every table, as text."""
    metadata = MetaData()
    metadata.reflect(bot.database.engine)
    with bot.database.engine.connect() as connection:
        return "\n".join(
            repr(row)
            for table in metadata.sorted_tables
            for row in connection.execute(select(table))
        )


def _seen_by_people(bot: RunningBot) -> str:
    return "\n".join(
        repr({key: value for key, value in call.args.items() if key != "_token"})
        for call in bot.slack.calls
    )


def test_no_secret_reaches_logs_people_or_the_store(
    start_bot: StartBot, dead_endpoint: str, every_log_record: io.StringIO
) -> None:
    working = start_bot(llm_api_key=LLM_API_KEY)
    question = mention("who approves a 30,000 lb load?")
    working.send.event(event_callback(question))
    final = working.slack.wait_for("chat.update", has_buttons)[0]
    actions = next(block for block in final.args["blocks"] if block["type"] == "actions")
    answer_id = actions["block_id"].removeprefix("answer:")
    click = block_action(
        FEEDBACK_UP, answer_id, channel=question["channel"], message_ts=final.args["ts"],
        thread_ts=question["ts"],
    )  # fmt: skip
    working.send.interaction(click)
    working.slack.wait_for("chat.postEphemeral")
    httpx.get(f"{working.url}/readyz", timeout=10)  # sends LLM_API_KEY to the model server
    # A request signed with the secret, then a forged one: both are logged at DEBUG.
    working.send.event(event_callback(mention("hello")), headers={"X-Slack-Signature": "v0=0"})

    failing = start_bot(endpoints=[dead_endpoint], llm_api_key=LLM_API_KEY)
    failing.send.event(event_callback(mention("what's the SLA on a priority-1 reefer ticket?")))
    failing.slack.wait_for("chat.update", lambda call: "reference `" in str(call.args))

    logged = every_log_record.getvalue()
    assert "could not answer" in logged  # the failure was logged, with its traceback
    assert "Authorization" in logged or "headers" in logged  # DEBUG really was on
    for bot in (working, failing):
        seen, stored = _seen_by_people(bot), _store_text(bot)
        for secret in SECRETS:
            assert secret not in logged
            assert secret not in seen
            assert secret not in stored
    # The Web API itself got the token, in the Authorization header only.
    assert {call.args["_token"] for call in working.slack.calls} == {BOT_TOKEN}
