"""Slack's agent experience, through the real Bolt pipeline: the status at once, the steps
with their sources, the streamed answer closed with the policy's words, sources and Slack's
own feedback buttons; the fallback where Slack refuses the methods; the Messages tab's
suggested prompts; and staying within Slack's rate tiers with 50 answers in flight."""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any

import pytest
from bot_harness import RunningBot, StartBot
from seeding import seed_answer
from slack_mock import (
    TEAM_ID,
    MockSlack,
    SlackCall,
    app_home_opened,
    assert_valid_blocks,
    block_text,
    event_callback,
    feedback_click,
    has_buttons,
    mention,
    message,
    stream_steps,
    streamed_markdown,
)
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot.blocks import SourceRef, answer_messages
from bot.replies import AgentReply, ReplyTarget, StreamingSupport
from bot.slack_pacing import SlackPacing
from bot.steps import CHECK_PASSED, check_done
from serving.assistant import SourcesFound
from store.models import Feedback, Message

COVERED = "who approves a 30,000 lb load?"
NO_MODEL = ["http://127.0.0.1:9/v1"]  # for bots that never call the model


def agent_bot(start_bot: StartBot, **options: Any) -> RunningBot:
    return start_bot(slack_native_streaming=True, **options)


def thread_calls(bot: RunningBot, thread_ts: str) -> list[SlackCall]:
    """The calls of one answer, in order: its status, its stream, and what followed."""
    streams: set[str] = set()
    found = []
    for call in list(bot.slack.calls):
        if call.args.get("thread_ts") == thread_ts:
            found.append(call)
            if call.method == "chat.startStream":
                streams.add(str(call.response.get("ts")))
        elif call.args.get("ts") in streams:
            found.append(call)
    return found


def streamed_answer(bot: RunningBot, question: dict[str, Any]) -> list[SlackCall]:
    assert bot.send.event(event_callback(question)).status_code == 200
    [started] = bot.slack.wait_for(
        "chat.startStream", lambda c: c.args["thread_ts"] == question["ts"]
    )
    bot.slack.wait_for(
        "chat.stopStream",
        lambda c: c.args["ts"] == started.response["ts"] and bool(c.args.get("blocks")),
    )
    return thread_calls(bot, question["ts"])


def test_an_answer_shows_a_status_then_its_steps_then_streams_and_ends_with_its_sources(
    start_bot: StartBot,
) -> None:
    bot = agent_bot(start_bot)
    question = mention(COVERED)

    calls = streamed_answer(bot, question)

    methods = [call.method for call in calls]
    assert methods[:2] == ["assistant.threads.setStatus", "chat.startStream"]
    assert methods[-1] == "chat.stopStream"
    assert set(methods[2:-1]) <= {"chat.appendStream"}
    status = calls[0]
    assert (status.args["channel_id"], status.args["thread_ts"]) == ("C0DISPATCH", question["ts"])
    assert status.args["status"]
    assert status.args["loading_messages"]
    started = calls[1]
    assert (started.args["recipient_user_id"], started.args["recipient_team_id"]) == (
        "U0ALICE",
        TEAM_ID,
    )
    # The steps: what the search found, then the check, which ends with the answer.
    search, checking, *_, checked = stream_steps(calls)
    assert (search["id"], search["status"]) == ("search", "complete")
    assert search["output"].startswith("Found Load Approval Thresholds v")
    assert (checking["id"], checking["status"]) == ("check", "in_progress")
    assert (checked["id"], checked["status"]) == ("check", "complete")
    assert streamed_markdown(calls).strip()
    stopped = calls[-1]
    assert_valid_blocks(stopped.args["blocks"])
    assert "Sources" in block_text(stopped)
    [feedback_block] = [b for b in stopped.args["blocks"] if b["type"] == "context_actions"]
    assert feedback_block["elements"][0]["type"] == "feedback_buttons"
    assert has_buttons(stopped)  # "Ask a person"
    assert not bot.slack.calls_to("chat.update")
    assert not bot.slack.calls_to("chat.postMessage")
    assert not bot.slack.rate_limited()


def test_slacks_feedback_buttons_store_the_vote_and_a_down_vote_asks_why(
    start_bot: StartBot,
) -> None:
    bot = agent_bot(start_bot)
    question = mention(COVERED)
    stopped = streamed_answer(bot, question)[-1]

    for vote, user in ((-1, "U0ALICE"), (1, "U0BOB")):
        click = feedback_click(stopped, vote, user=user, thread_ts=question["ts"])
        assert bot.send.interaction(click).status_code == 200

    modal = bot.slack.wait_for("views.open")[0]
    assert modal.args["view"]["callback_id"] == "feedback_reason"
    deadline = time.monotonic() + 10
    while len(votes := _votes(bot)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert votes == [("U0ALICE", -1), ("U0BOB", 1)]


def test_where_slack_refuses_the_agent_methods_the_answer_still_comes_and_it_is_remembered(
    start_bot: StartBot,
) -> None:
    bot = agent_bot(start_bot)
    bot.slack.refuse("chat.startStream", "im", "method_not_supported_for_channel_type")
    bot.slack.refuse("assistant.threads.setStatus", "channel", "not_allowed")

    for _ in range(2):
        asked = message(COVERED, channel="D0ALICE")
        assert bot.send.event(event_callback(asked)).status_code == 200
        final = bot.slack.wait_for("chat.update", lambda c, ts=asked["ts"]: has_buttons(c) and (
            _posted_in(bot, c.args["ts"]) == ts
        ))[0]  # fmt: skip
        assert_valid_blocks(final.args["blocks"])
    first, second = (streamed_answer(bot, mention(COVERED)) for _ in range(2))

    # Each refusal is met once, then remembered for that kind of channel.
    assert first[0].method == "assistant.threads.setStatus"
    assert first[0].response["error"] == "not_allowed"
    assert second[0].method == "chat.startStream"
    in_im = [c for c in bot.slack.calls_to("chat.startStream") if c.args["channel"] == "D0ALICE"]
    assert len(in_im) == 1
    assert len(bot.slack.calls_to("assistant.threads.setStatus")) == 2  # first DM, first mention


def test_when_the_model_is_down_the_stream_ends_in_an_apology_with_the_reference(
    start_bot: StartBot,
) -> None:
    bot = agent_bot(start_bot, endpoints=NO_MODEL, read_timeout_s=2)
    question = mention(COVERED)

    calls = streamed_answer(bot, question)

    stopped = calls[-1]
    assert "Sorry, something went wrong while I was answering" in block_text(stopped)
    assert_valid_blocks(stopped.args["blocks"])
    assert not has_buttons(stopped)
    with bot.database.transaction() as session:
        assert session.scalar(select(Message.text).where(Message.slack_ts == question["ts"]))


def test_the_messages_tab_offers_the_configured_prompts_then_what_others_asked_most(
    start_bot: StartBot,
) -> None:
    bot = agent_bot(
        start_bot,
        endpoints=NO_MODEL,
        slack_suggested_prompts=["Who approves a 30,000 lb load?"],
        audience_default=["dispatch"],
        audience_users={"U0HR": ["hr"]},
    )
    for asker in ("U0A", "U0B"):
        seed_answer(bot.database, asker=asker, question="where do reefers park overnight?",
                    drew_on=("dispatch",))  # fmt: skip
        seed_answer(bot.database, asker=asker, question="how many leave days do I get?",
                    drew_on=("hr",))  # fmt: skip
        seed_answer(bot.database, asker=asker, question="call me on 555-201-4477 about my load",
                    drew_on=("dispatch",))  # fmt: skip
    seed_answer(bot.database, asker="U0A", question="only one person asked this?",
                drew_on=("dispatch",))  # fmt: skip

    def prompts_for(user: str) -> list[str]:
        before = len(bot.slack.calls_to("assistant.threads.setSuggestedPrompts"))
        assert bot.send.event(event_callback(app_home_opened(user=user, tab="messages"))).is_success
        call = bot.slack.wait_for("assistant.threads.setSuggestedPrompts", count=before + 1)[-1]
        assert call.args["channel_id"] == "D0DISPATCH"
        assert all(p["title"] == p["message"] for p in call.args["prompts"])
        return [prompt["message"] for prompt in call.args["prompts"]]

    assert prompts_for("U0CAROL") == [
        "Who approves a 30,000 lb load?",
        "where do reefers park overnight?",
    ]
    configured, *most_asked = prompts_for("U0HR")  # the same count of askers: latest first
    assert configured == "Who approves a 30,000 lb load?"
    assert most_asked == ["how many leave days do I get?", "where do reefers park overnight?"]
    assert not bot.slack.calls_to("views.publish")


def test_the_mock_answers_past_a_rate_tier_with_429_and_retry_after() -> None:
    slack = MockSlack()
    for _ in range(50):
        assert "_http_status" not in slack.record("chat.update", {"channel": "C1", "ts": "1.1"})

    limited = slack.record("chat.update", {"channel": "C1", "ts": "1.1"})

    assert (limited["_http_status"], limited["error"]) == (429, "ratelimited")
    assert limited["_retry_after"] >= 1


def test_fifty_answers_in_flight_stay_within_slacks_rate_tiers() -> None:
    """Fifty streamed answers at once, each refreshing as fast as its interval allows, against
    a mock that enforces the tiers: no 429, and every answer ends with its buttons."""
    slack = MockSlack().start()
    try:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        support, pacing = StreamingSupport(), SlackPacing()
        found = SourcesFound(results=(), covered=True)
        source = SourceRef(
            "load-approval", "Load Approval Thresholds", "Approval by weight", 3, date(2026, 3, 1)
        )

        def answer(number: int) -> None:
            target = ReplyTarget(client, TEAM_ID, "C0DISPATCH", "channel", f"1.{number}", "U0A")
            reply = AgentReply(target, support=support, pacing=pacing, interval_s=0.2)
            reply.start()
            reply.step(found, [source])
            text = ""
            for word in range(40):
                text += f"word{word} "
                reply.update(text)
                time.sleep(0.05)
            messages = answer_messages(text, [source], number)
            reply.finish(text, messages, check_done(CHECK_PASSED))

        threads = [threading.Thread(target=answer, args=(n,)) for n in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert slack.rate_limited() == []
        stops = [c for c in slack.calls_to("chat.stopStream") if c.args.get("blocks")]
        assert len(stops) == 50
        assert len(slack.calls_to("chat.appendStream")) <= 100
    finally:
        slack.stop()


def _posted_in(bot: RunningBot, ts: str) -> str | None:
    for call in bot.slack.calls_to("chat.postMessage"):
        if call.response.get("ts") == ts:
            return str(call.args.get("thread_ts"))
    return None


def _votes(bot: RunningBot) -> list[tuple[str, int]]:
    with bot.database.transaction() as session:
        rows = session.scalars(select(Feedback).order_by(Feedback.user_id)).all()
        return [(row.user_id, row.value) for row in rows]


def test_an_answers_final_message_waits_out_slacks_rate_limit_where_a_sign_does_not() -> None:
    slack = MockSlack().start()
    try:
        refusals = iter([True, True, False, True])
        slack.responses["chat.postMessage"] = lambda args: (
            {"ok": False, "error": "ratelimited", "_http_status": 429, "_retry_after": 0}
            if next(refusals)
            else {"ok": True, "channel": args["channel"], "ts": "1800000000.000001"}
        )
        client = WebClient(token="xoxb-test", base_url=slack.api_url)  # no retries of its own
        target = ReplyTarget(client, TEAM_ID, "C0DISPATCH", "channel", "1.1", "U0A")
        message = answer_messages("Yes.", [], 7)[0]

        posted = target.post(message, patient=True)  # refused twice, then taken

        assert posted["ts"] == "1800000000.000001"
        with pytest.raises(SlackApiError):
            target.post(message)  # a sign is not worth the wait
        assert len(slack.calls_to("chat.postMessage")) == 4
    finally:
        slack.stop()
