"""Per-user and per-channel limits on questions: counted in the store, so two replicas on one
store share them; a question over a limit is recorded, not sent to the model, and the asker
is told privately to wait."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from bot_harness import RunningBot, StartBot
from metrics_support import scrape
from slack_mock import (
    BOT_USER_ID,
    TEAM_ID,
    SlackCall,
    event_callback,
    has_buttons,
    mention,
    message,
)
from sqlalchemy import select
from vllm_support import CannedChatServer

from bot.incoming import question_from_event
from bot.rate_limits import RateLimits, limit_reached
from store.models import Message
from store.types import utcnow

ANSWER = "The shift lead on duty approves a 30,000 lb load [1]."
LIMITED = "dispatchbot_questions_rate_limited_total"


@pytest.fixture(scope="module")
def canned_model() -> Iterator[CannedChatServer]:
    server = CannedChatServer([ANSWER])
    yield server
    server.close()


@pytest.fixture
def model(canned_model: CannedChatServer) -> CannedChatServer:
    canned_model.requests.clear()  # each test counts the model calls it caused
    return canned_model


def answered(bot: RunningBot, event: dict) -> SlackCall:
    """Send the question and wait for its final answer."""
    bot.send.event(event_callback(event))
    placeholder = bot.slack.wait_for(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == event["ts"]
    )
    ts = placeholder[0].response["ts"]
    return bot.slack.wait_for("chat.update", lambda c: c.args["ts"] == ts and has_buttons(c))[0]


def declined(bot: RunningBot, event: dict) -> SlackCall:
    """Send the question and wait for the private note that it is over a limit."""
    bot.send.event(event_callback(event))
    return bot.slack.wait_for(
        "chat.postEphemeral", lambda c: "in the last minute" in c.args["text"]
    )[-1]


def user_questions(bot: RunningBot) -> list[str]:
    with bot.database.transaction() as session:
        return list(
            session.scalars(select(Message.text).where(Message.role == "user").order_by(Message.id))
        )


def test_a_person_over_the_limit_waits_and_the_limit_holds_across_replicas(
    start_bot: StartBot, model: CannedChatServer
) -> None:
    one = start_bot(endpoints=[model.url], rate_limit_user_per_minute=2)
    two = start_bot(
        endpoints=[model.url], rate_limit_user_per_minute=2, database_url=one.settings.database_url
    )

    limited_before = scrape(one.url).value(LIMITED, scope="user")
    answered(one, mention("who approves a 30,000 lb load?"))
    answered(two, mention("and a 41,000 lb one?"))
    third = mention("and a 50,000 lb one?")
    note = declined(one, third)

    assert note.args["user"] == "U0ALICE"
    assert note.args["channel"] == third["channel"]
    assert "You've asked 3 questions in the last minute" in note.args["text"]
    assert "send it again in a minute" in note.args["text"]
    one.wait_idle()
    two.wait_idle()
    assert len(model.requests) == 2  # no model call for the third
    assert not [
        c for c in one.slack.calls_to("chat.postMessage") if c.args.get("thread_ts") == third["ts"]
    ]
    assert user_questions(one)[-1] == "and a 50,000 lb one?"  # recorded, so not lost
    assert scrape(one.url).value(LIMITED, scope="user") == limited_before + 1

    answered(two, mention("who approves a 30,000 lb load?", user="U0BOB"))  # others go on
    assert len(model.requests) == 3

    # A minute on, the same person may ask again.
    asked = question_from_event(third, team_id=TEAM_ID, bot_user_id=BOT_USER_ID)
    assert asked is not None
    limits = RateLimits(user_per_minute=2, channel_per_minute=0)
    assert limit_reached(one.database, limits, asked) is not None
    later = utcnow() + timedelta(seconds=61)
    assert limit_reached(one.database, limits, asked, now=later) is None


def test_a_busy_channel_over_its_limit_waits_but_direct_messages_and_escalations_go_on(
    start_bot: StartBot, model: CannedChatServer
) -> None:
    bot = start_bot(
        endpoints=[model.url],
        rate_limit_user_per_minute=0,
        rate_limit_channel_per_minute=2,
        escalation_channel="C0ONCALL",
    )
    answered(bot, mention("who approves a 30,000 lb load?", user="U0ALICE"))
    answered(bot, mention("and a 41,000 lb one?", user="U0BOB"))

    note = declined(bot, mention("and a 50,000 lb one?", user="U0CAROL"))
    assert "This channel has asked me 3 questions in the last minute" in note.args["text"]
    assert note.args["user"] == "U0CAROL"

    # Asking for a person is never limited: the card goes out.
    bot.send.event(event_callback(mention("get me a dispatcher please", user="U0CAROL")))
    bot.slack.wait_for("chat.postMessage", lambda c: c.args["channel"] == "C0ONCALL")
    # A direct message is not the channel's.
    answered(bot, message("who approves a 30,000 lb load?", channel="D0CAROL", user="U0CAROL"))
    bot.wait_idle()
    assert len(model.requests) == 3
    assert len(bot.slack.calls_to("chat.postEphemeral")) == 1
