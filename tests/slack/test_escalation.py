"""Handing questions to people, end to end: each trigger, the card, claim, silence while
people own the thread, resolve with the prefilled modal, the thread back to the bot,
reminders that survive a restart, and the queue on the command line."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from bot_harness import RunningBot, StartBot
from slack_mock import (
    SlackCall,
    assert_valid_blocks,
    block_action,
    block_text,
    event_callback,
    has_buttons,
    mention,
    message,
    view_submission,
)
from slack_sdk.models.views import View
from sqlalchemy import select
from typer.testing import CliRunner

from bot.blocks import ASK_PERSON, FEEDBACK_DOWN
from bot.cli import app as cli
from bot.escalation_blocks import ESCALATION_CLAIM, ESCALATION_RESOLVE, RESOLUTION_BLOCK
from store.models import Conversation, ConversationState, Escalation, Message

COVERED = "who approves a 30,000 lb load?"
ONCALL = "C0ONCALL"
ON_CALL = {
    "escalation_channel": ONCALL,
    "escalation_mention": "S0DISPATCH",
    "escalation_fallback_mention": "U0BOSS",
}


def on_call_bot(start_bot: StartBot, **overrides: Any) -> RunningBot:
    return start_bot(**(ON_CALL | overrides))


def cards(bot: RunningBot, count: int = 1) -> list[SlackCall]:
    return bot.slack.wait_for(
        "chat.postMessage", lambda c: c.args["channel"] == ONCALL, count=count
    )


def thread_posts(bot: RunningBot, thread_ts: str) -> list[SlackCall]:
    return [
        c for c in bot.slack.calls_to("chat.postMessage") if c.args.get("thread_ts") == thread_ts
    ]


def escalations(bot: RunningBot) -> list[Escalation]:
    with bot.database.transaction() as session:
        rows = session.scalars(select(Escalation).order_by(Escalation.id)).all()
        session.expunge_all()
        return list(rows)


def conversation_state(bot: RunningBot) -> ConversationState:
    with bot.database.transaction() as session:
        return session.scalars(select(Conversation.state)).one()


def turns(bot: RunningBot) -> list[tuple[str, str, str | None]]:
    with bot.database.transaction() as session:
        rows = session.scalars(select(Message).order_by(Message.id)).all()
        return [(m.role.value, m.text, m.user_id) for m in rows]


def answered(bot: RunningBot, text: str = COVERED) -> tuple[dict, SlackCall]:
    question = mention(text)
    assert bot.send.event(event_callback(question)).status_code == 200
    final = bot.slack.wait_for(
        "chat.update",
        lambda c: has_buttons(c) and c.args["channel"] == question["channel"],
    )[-1]
    return question, final


def press(
    bot: RunningBot, action_id: str, value: str, *, channel: str, message_ts: str, user: str
) -> None:
    payload = block_action(
        action_id, value, channel=channel, message_ts=message_ts, thread_ts=message_ts, user=user
    )
    response = bot.send.interaction(payload)
    assert response.status_code == 200
    assert response.elapsed.total_seconds() < 3


def press_on_card(bot: RunningBot, card: SlackCall, action_id: str, user: str) -> None:
    button = next(
        element
        for block in card.args["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == action_id
    )
    press(
        bot, action_id, button["value"], channel=ONCALL, message_ts=card.response["ts"], user=user
    )


def eventually(read: Callable[[], Any], timeout: float = 5.0) -> Any:
    """What `read` returns once it is truthy (the bot writes right after posting)."""
    deadline = time.monotonic() + timeout
    while not (value := read()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_ask_a_person_posts_a_full_card_and_tells_the_thread(start_bot: StartBot) -> None:
    bot = on_call_bot(start_bot)
    question, final = answered(bot)
    answer_id = next(b for b in final.args["blocks"] if b["type"] == "actions")["block_id"]

    press(
        bot,
        ASK_PERSON,
        answer_id.removeprefix("answer:"),
        channel=question["channel"],
        message_ts=final.args["ts"],
        user="U0ALICE",
    )

    card = cards(bot)[0]
    assert_valid_blocks(card.args["blocks"])
    shown = block_text(card)
    assert COVERED.replace(",", "") in shown.replace(",", "")  # the question
    assert "Asked for a person (button)" in shown  # the trigger
    assert "<!subteam^S0DISPATCH>" in shown  # the on-call group
    assert "https://northwind.slack.com/archives/C0DISPATCH/p" in shown  # the thread
    assert "Load Approval Thresholds" in shown  # the draft's sources
    assert "<@U0ALICE>" in shown
    claim_and_resolve = {
        e["action_id"] for b in card.args["blocks"] if b["type"] == "actions" for e in b["elements"]
    }
    assert claim_and_resolve == {ESCALATION_CLAIM, ESCALATION_RESOLVE}
    notice = bot.slack.wait_for(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == question["ts"] and "dispatch team" in c.args["text"],
    )[0]
    assert "<@U0ALICE>" in notice.args["text"]
    [escalation] = escalations(bot)
    assert (escalation.trigger, escalation.priority, escalation.status.value) == (
        "button",
        "normal",
        "open",
    )
    assert eventually(lambda: escalations(bot)[0].card_ts) == card.response["ts"]
    assert conversation_state(bot) is ConversationState.ESCALATED

    press(  # a second press pages no one again
        bot,
        ASK_PERSON,
        answer_id.removeprefix("answer:"),
        channel=question["channel"],
        message_ts=final.args["ts"],
        user="U0BOB",
    )
    assert "already" in bot.slack.wait_for("chat.postEphemeral")[0].args["text"]
    assert len(cards(bot)) == 1
    assert len(escalations(bot)) == 1


def test_asking_for_a_person_in_words_skips_the_model(start_bot: StartBot) -> None:
    bot = on_call_bot(start_bot)
    question = mention("can I talk to a human about a detention charge?")

    assert bot.send.event(event_callback(question)).status_code == 200

    card = cards(bot)[0]
    assert "Asked for a person in words" in block_text(card)
    assert "detention charge" in block_text(card)
    bot.wait_idle()
    [notice] = thread_posts(bot, question["ts"])  # no placeholder, no answer: only the notice
    assert "dispatch team" in notice.args["text"]
    assert not bot.slack.calls_to("chat.update")
    assert turns(bot) == [("user", "can I talk to a human about a detention charge?", "U0ALICE")]
    assert escalations(bot)[0].trigger == "asked"


def test_weak_evidence_answers_that_it_is_not_covered_and_escalates(start_bot: StartBot) -> None:
    bot = on_call_bot(start_bot)

    _, final = answered(bot, "what is the wifi password in the break room?")

    assert "couldn't find a current policy" in block_text(final)
    card = cards(bot)[0]
    assert "No policy covers it" in block_text(card)
    assert escalations(bot)[0].trigger == "weak_evidence"
    assert escalations(bot)[0].answer_id is not None  # the draft the bot had


def test_a_sensitive_topic_gets_the_safety_line_first_and_a_high_priority_card(
    start_bot: StartBot,
) -> None:
    bot = on_call_bot(start_bot)
    text = "a driver was injured unloading at the dock, what do we do?"

    question, final = answered(bot, text)

    posts = thread_posts(bot, question["ts"])
    assert "911" in posts[0].args["text"]  # the safety note comes before anything else
    assert "1-800-555-0142" in posts[0].args["text"]
    assert posts[0].at < final.at
    card = cards(bot)[0]
    assert_valid_blocks(card.args["blocks"])
    assert "High priority" in block_text(card)
    assert "Sensitive topic" in block_text(card)
    [escalation] = escalations(bot)
    assert (escalation.trigger, escalation.priority) == ("sensitive", "high")


def test_a_second_downvote_in_the_thread_escalates(start_bot: StartBot) -> None:
    bot = on_call_bot(start_bot)
    question, final = answered(bot)
    answer_id = next(b for b in final.args["blocks"] if b["type"] == "actions")["block_id"]
    vote = {"channel": question["channel"], "message_ts": final.args["ts"]}

    press(bot, FEEDBACK_DOWN, answer_id.removeprefix("answer:"), user="U0ALICE", **vote)
    bot.slack.wait_for("views.open")
    bot.wait_idle()
    assert escalations(bot) == []  # one 👎 is feedback, not yet an escalation

    press(bot, FEEDBACK_DOWN, answer_id.removeprefix("answer:"), user="U0BOB", **vote)

    card = cards(bot)[0]
    assert "Second 👎" in block_text(card)
    assert escalations(bot)[0].trigger == "second_downvote"


def test_claim_silence_resolve_and_the_thread_back_to_the_bot(start_bot: StartBot) -> None:
    bot = on_call_bot(start_bot)
    question = mention("get me a dispatcher, the consignee refuses the load")
    thread = {"thread_ts": question["ts"]}
    bot.send.event(event_callback(question))
    card = cards(bot)[0]

    press_on_card(bot, card, ESCALATION_CLAIM, user="U0DISPATCHER")

    claimed_card = bot.slack.wait_for("chat.update", lambda c: c.args["ts"] == card.response["ts"])[
        0
    ]
    assert_valid_blocks(claimed_card.args["blocks"])
    assert "<@U0DISPATCHER>" in block_text(claimed_card)
    buttons = {
        e["action_id"]
        for b in claimed_card.args["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    }
    assert buttons == {ESCALATION_RESOLVE}
    on_it = bot.slack.wait_for(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == question["ts"], count=2
    )[1]
    assert "<@U0DISPATCHER>" in on_it.args["text"]
    [escalation] = escalations(bot)
    assert (escalation.status.value, escalation.assignee) == ("claimed", "U0DISPATCHER")
    assert escalation.claimed_at is not None

    # While people own the thread the bot says nothing, but every message is recorded.
    posted = len(bot.slack.calls_to("chat.postMessage"))
    bot.send.event(event_callback(message("it's load 4471, they say it's damaged", **thread)))
    nudge = mention("hello? anyone?", **thread)  # Slack sends a mention as both events
    bot.send.event(event_callback(nudge))
    bot.send.event(event_callback(message(nudge["text"], ts=nudge["ts"], **thread)))
    reply = "Refuse it on the BOL and photograph the damage; I'll call the shipper."
    bot.send.event(event_callback(message(reply, user="U0DISPATCHER", **thread)))
    bot.wait_idle()
    assert len(bot.slack.calls_to("chat.postMessage")) == posted
    assert [(role, user) for role, _, user in turns(bot)] == [
        ("user", "U0ALICE"),
        ("user", "U0ALICE"),
        ("user", "U0ALICE"),
        ("human", "U0DISPATCHER"),
    ]

    # Resolve: the modal starts from the assignee's last reply; it is not posted twice.
    press_on_card(bot, claimed_card, ESCALATION_RESOLVE, user="U0DISPATCHER")
    modal = bot.slack.wait_for("views.open")[0].args["view"]
    View(**modal).validate_json()
    [field] = [b for b in modal["blocks"] if b.get("block_id") == RESOLUTION_BLOCK]
    assert field["element"]["initial_value"] == reply
    submitted = {
        field["block_id"]: {
            field["element"]["action_id"]: {"type": "plain_text_input", "value": reply}
        }
    }
    response = bot.send.interaction(view_submission(modal, submitted, user="U0DISPATCHER"))
    assert response.status_code == 200

    resolved_card = bot.slack.wait_for(
        "chat.update", lambda c: c.args["ts"] == card.response["ts"], count=2
    )[1]
    assert not has_buttons(resolved_card)
    bot.wait_idle()  # the listener stores the resolution after it updates the card
    [escalation] = escalations(bot)
    assert (escalation.status.value, escalation.resolution) == ("resolved", reply)
    assert escalation.resolved_at is not None
    assert len(bot.slack.calls_to("chat.postMessage")) == posted  # it was already in the thread
    assert conversation_state(bot) is ConversationState.BOT

    # Back to the bot: a follow-up in the thread is answered again.
    follow_up = message("and who approves a 30,000 lb load?", **thread)
    bot.send.event(event_callback(follow_up))
    bot.slack.wait_for(
        "chat.update", lambda c: has_buttons(c) and c.args["channel"] == question["channel"]
    )


def test_a_resolution_written_in_the_modal_is_posted_in_the_thread(start_bot: StartBot) -> None:
    bot = on_call_bot(start_bot)
    question = mention("talk to a person please, my trailer seal is broken")
    bot.send.event(event_callback(question))
    card = cards(bot)[0]

    press_on_card(bot, card, ESCALATION_RESOLVE, user="U0DISPATCHER")  # resolved unclaimed
    modal = bot.slack.wait_for("views.open")[0].args["view"]
    [field] = [b for b in modal["blocks"] if b.get("block_id") == RESOLUTION_BLOCK]
    assert not field["element"].get("initial_value")  # nothing said in the thread yet
    answer = "Reseal it with a **numbered seal** and note both numbers on the BOL."
    submitted = {
        field["block_id"]: {
            field["element"]["action_id"]: {"type": "plain_text_input", "value": answer}
        }
    }
    bot.send.interaction(view_submission(modal, submitted, user="U0DISPATCHER"))

    posted = bot.slack.wait_for(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == question["ts"], count=2
    )[1]
    assert_valid_blocks(posted.args["blocks"])
    assert "*numbered seal*" in block_text(posted)  # Markdown as Slack shows it
    assert "<@U0DISPATCHER>" in block_text(posted)
    bot.wait_idle()
    [escalation] = escalations(bot)
    assert escalation.assignee == "U0DISPATCHER"
    assert turns(bot)[-1] == ("human", answer, "U0DISPATCHER")


def test_reminders_fire_after_a_restart_and_then_go_to_the_fallback(
    start_bot: StartBot, sqlite_url: str
) -> None:
    # The first bot never scans; it is stopped before the escalation is due.
    first = on_call_bot(start_bot, escalation_remind_minutes=0.02, escalation_scan_interval_s=3600)
    question = mention("get me a supervisor about a refused load")
    first.send.event(event_callback(question))
    original = cards(first)[0]
    first.stop()
    time.sleep(1.3)  # 0.02 minutes pass while no bot runs

    second = on_call_bot(
        start_bot,
        database_url=sqlite_url,
        escalation_remind_minutes=0.02,
        escalation_scan_interval_s=0.2,
    )
    reminder, last_call = cards(second, count=3)[1:]

    assert "<!here>" in block_text(reminder)
    assert "<!subteam^S0DISPATCH>" in block_text(reminder)
    moved = second.slack.wait_for("chat.update", lambda c: c.args["ts"] == original.response["ts"])
    assert not has_buttons(moved[0])  # the old card points to the new one
    assert "<@U0BOSS>" in block_text(last_call)  # the second reminder: the fallback group
    # The scheduler runs on a timer of its own: several more scans (0.2 s apart) get their
    # chance to send a third reminder.
    time.sleep(1.5)
    assert len(cards(second, count=3)) == 3
    assert (
        len([c for c in second.slack.calls_to("chat.postMessage") if c.args["channel"] == ONCALL])
        == 3
    )
    [escalation] = escalations(second)
    assert escalation.reminders_sent == 2
    assert escalation.card_ts == last_call.response["ts"]


def test_the_queue_on_the_command_line(start_bot: StartBot, sqlite_url: str) -> None:
    bot = on_call_bot(start_bot)
    # One after the other, so the first card is the first escalation's (the list is by id).
    for count, text in enumerate(
        ("get me a dispatcher about load 1", "talk to a human about load 2"), start=1
    ):
        bot.send.event(event_callback(mention(text)))
        cards(bot, count=count)
    first_card = cards(bot, count=2)[0]
    press_on_card(bot, first_card, ESCALATION_CLAIM, user="U0DISPATCHER")
    bot.slack.wait_for("chat.update", lambda c: c.args["ts"] == first_card.response["ts"])
    bot.wait_idle()
    runner = CliRunner()
    env = {"DATABASE_URL": sqlite_url, "COLUMNS": "200"}

    listed = runner.invoke(cli, ["escalations", "list", "--json"], env=env)
    only_open = runner.invoke(cli, ["escalations", "list", "--status", "open", "--json"], env=env)
    table = runner.invoke(cli, ["escalations", "list"], env=env)
    stats = runner.invoke(cli, ["escalations", "stats", "--json"], env=env)

    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["status"], r["trigger"]) for r in rows] == [("claimed", "asked"), ("open", "asked")]
    assert rows[0]["assignee"] == "U0DISPATCHER"
    assert rows[0]["claim_s"] is not None
    assert rows[1]["claim_s"] is None
    assert all(r["age_s"] >= 0 for r in rows)
    assert [r["status"] for r in json.loads(only_open.stdout)] == ["open"]
    assert "claimed" in table.stdout
    assert "U0DISPATCHER" in table.stdout
    assert json.loads(stats.stdout)["asked"]["count"] == 2
    assert json.loads(stats.stdout)["asked"]["open"] == 1


@pytest.mark.parametrize("status", ["open", "claimed", "resolved"])
def test_an_empty_queue_says_so(sqlite_url: str, status: str) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": sqlite_url}
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0

    result = runner.invoke(cli, ["escalations", "list", "--status", status], env=env)

    assert result.exit_code == 0
    assert f"No {status} escalations." in result.stdout
