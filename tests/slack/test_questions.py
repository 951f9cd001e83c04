"""Questions in Slack, end to end: signed events in; what reached Slack and the store out."""

from __future__ import annotations

import itertools
import logging
import re
import sqlite3
import threading
import time

import httpx
import pytest
from bot_harness import RunningBot, StartBot
from slack_mock import (
    BOT_ID,
    BOT_USER_ID,
    SlackCall,
    assert_valid_blocks,
    block_text,
    event_callback,
    has_buttons,
    mention,
    message,
)
from sqlalchemy import func, select
from vllm_support import forced_answer

from store.models import Answer, Citation, Message, SlackEvent

COVERED = "who approves a 30,000 lb load?"
STREAMED = (
    "The shift lead on duty approves a 30,000 lb load [1]. "
    "Reach the shift lead at the dispatch desk, ext. 4411. "
    "The shift lead approves every load from 26,001 to 40,000 lb. "
    "Call the dispatch desk when the shift lead is away."
)
FOLLOW_UP = "and if it is 41,000 lb?"


def placeholder_in(bot: RunningBot, thread_ts: str, nth: int = 1) -> SlackCall:
    """The `nth` message the bot posted in the thread."""
    in_thread = bot.slack.wait_for(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == thread_ts, count=nth
    )
    return in_thread[nth - 1]


def final_edit_of(bot: RunningBot, reply: SlackCall) -> SlackCall:
    ts = reply.response["ts"]
    return bot.slack.wait_for("chat.update", lambda c: c.args["ts"] == ts and has_buttons(c))[0]


def answer_in(bot: RunningBot, reply: SlackCall) -> Answer:
    with bot.database.transaction() as session:
        answer = session.scalars(
            select(Answer).join(Message).where(Message.slack_ts == reply.response["ts"])
        ).one()
        session.expunge(answer)
        return answer


def stored_messages(bot: RunningBot) -> list[tuple[str, str, str | None]]:
    with bot.database.transaction() as session:
        rows = session.scalars(select(Message).order_by(Message.id)).all()
        return [(row.role.value, row.text, row.slack_ts) for row in rows]


def ask_and_wait(bot: RunningBot, event: dict) -> tuple[SlackCall, SlackCall]:
    """Send a question; return its placeholder and the final edit with the buttons."""
    thread_ts = event.get("thread_ts") or event["ts"]
    posted = [c for c in bot.slack.calls_to("chat.postMessage") if c.args["thread_ts"] == thread_ts]
    assert bot.send.event(event_callback(event)).status_code == 200
    placeholder = placeholder_in(bot, thread_ts, nth=len(posted) + 1)
    return placeholder, final_edit_of(bot, placeholder)


def test_a_mention_gets_a_placeholder_then_streamed_edits_then_the_cited_answer(
    start_bot: StartBot,
) -> None:
    # Sentences that pass their checks, each shown as it is written (the model is made to
    # write them: what a 135M model writes on its own mostly fails them).
    bot = start_bot(sampling=forced_answer(STREAMED), max_tokens=64)
    question = mention(COVERED)

    placeholder, final = ask_and_wait(bot, question)

    assert placeholder.args["channel"] == question["channel"]
    assert placeholder.args["thread_ts"] == question["ts"]  # replies in the mention's thread
    assert "Looking that up" in placeholder.args["text"]
    # Streamed: the first text at once, then edits of the same message before the final one,
    # no more than one per interval.
    ts = placeholder.response["ts"]
    edits = [c for c in bot.slack.calls_to("chat.update") if c.args["ts"] == ts]
    streaming = edits[: edits.index(final)]
    assert streaming, "the answer was not streamed into the placeholder"
    assert not any(has_buttons(edit) for edit in streaming)
    moments = [edit.at for edit in streaming]
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(moments))

    assert_valid_blocks(final.args["blocks"])
    shown = block_text(final)
    assert "Sources" in shown
    assert "<https://intranet.northwind.example/policies/load-approval|Load Approval" in shown
    assert re.search(r"v3 · effective since 1 Mar 2026", shown), shown

    answer = answer_in(bot, placeholder)
    actions = next(b for b in final.args["blocks"] if b["type"] == "actions")
    assert actions["block_id"] == f"answer:{answer.id}"
    assert [element["value"] for element in actions["elements"]] == [str(answer.id)]
    [feedback] = next(b for b in final.args["blocks"] if b["type"] == "context_actions")["elements"]
    assert feedback["positive_button"]["value"] == f"up:{answer.id}"
    with bot.database.transaction() as session:
        cited = session.scalars(select(Citation.doc_id).where(Citation.answer_id == answer.id))
        assert "load-approval" in set(cited)
    assert stored_messages(bot)[0] == ("user", COVERED, question["ts"])


def test_a_direct_message_is_answered_in_its_own_thread(start_bot: StartBot) -> None:
    bot = start_bot()
    question = message("what's the SLA on a priority-1 reefer ticket?", channel="D0ALICE")

    placeholder, final = ask_and_wait(bot, question)

    assert placeholder.args["channel"] == "D0ALICE"
    assert placeholder.args["thread_ts"] == question["ts"]
    assert "Service" in block_text(final)  # cites the service SLA policy
    assert_valid_blocks(final.args["blocks"])


def test_a_follow_up_in_the_thread_needs_no_mention_and_carries_the_history(
    start_bot: StartBot,
) -> None:
    bot = start_bot()
    first = mention(COVERED)
    ask_and_wait(bot, first)

    follow_up = message(FOLLOW_UP, thread_ts=first["ts"])
    placeholder, final = ask_and_wait(bot, follow_up)

    assert placeholder.args["thread_ts"] == first["ts"]
    assert_valid_blocks(final.args["blocks"])
    prompt = answer_in(bot, placeholder).prompt
    assert COVERED in prompt
    assert FOLLOW_UP in prompt
    roles = [role for role, _, _ in stored_messages(bot)]
    assert roles == ["user", "assistant", "user", "assistant"]


def test_what_is_not_a_question_to_the_bot_gets_no_answer(start_bot: StartBot) -> None:
    bot = start_bot()
    answered = mention(COVERED)
    ask_and_wait(bot, answered)
    posted_before = len(bot.slack.calls_to("chat.postMessage"))
    thread = {"thread_ts": answered["ts"]}

    ignored = [
        message("a root message in a channel without a mention"),
        message("a reply in a thread the bot never answered in", thread_ts="1600000000.000001"),
        message(COVERED, user=BOT_USER_ID, **thread),  # the bot's own message
        {**message("an integration's post", **thread), "bot_id": "B0OTHER"},
        {**message("the bot's own post", **thread), "bot_id": BOT_ID},
        message("thanks!", **thread),  # said to the people in the thread
        message("<@U0BOB> can you take this one?", **thread),
        {
            "type": "message",
            "subtype": "message_changed",
            "channel": "C0DISPATCH",
            "ts": "1700000999.000001",
            "message": {"type": "message", "user": "U0ALICE", "text": "edited question?"},
        },
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": "C0DISPATCH",
            "ts": "1700000999.000002",
            "deleted_ts": answered["ts"],
        },
    ]
    for event in ignored:
        assert bot.send.event(event_callback(event)).status_code == 200

    bot.wait_idle()
    assert len(bot.slack.calls_to("chat.postMessage")) == posted_before
    assert len(stored_messages(bot)) == 2  # the one question and its answer


def test_channel_settings_pick_where_the_bot_answers_and_listens(start_bot: StartBot) -> None:
    bot = start_bot(
        slack_answer_channels="C0DISPATCH,C0HELPDESK", slack_listen_channels="C0HELPDESK"
    )

    elsewhere = mention(COVERED, channel="C0RANDOM")
    assert bot.send.event(event_callback(elsewhere)).status_code == 200
    note = bot.slack.wait_for("chat.postEphemeral")[0]
    assert note.args["channel"] == "C0RANDOM"
    assert note.args["user"] == "U0ALICE"
    assert "don't answer questions in this channel" in note.args["text"]

    help_desk = message(COVERED, channel="C0HELPDESK")  # no mention needed there
    placeholder, _ = ask_and_wait(bot, help_desk)
    assert placeholder.args["channel"] == "C0HELPDESK"

    not_listening = message(COVERED, channel="C0DISPATCH")  # a plain root message
    assert bot.send.event(event_callback(not_listening)).status_code == 200
    bot.wait_idle()
    assert not [
        c for c in bot.slack.calls_to("chat.postMessage") if c.args["channel"] != "C0HELPDESK"
    ]


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_retried_event_is_answered_once(
    start_bot: StartBot, store: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("sqlite_url" if store == "sqlite" else "postgres_url")
    bot = start_bot(database_url=url)
    payload = event_callback(mention(COVERED))

    assert bot.send.event(payload).status_code == 200
    for attempt in ("1", "2"):
        retry = bot.send.event(
            payload, {"X-Slack-Retry-Num": attempt, "X-Slack-Retry-Reason": "http_timeout"}
        )
        assert retry.status_code == 200
    assert bot.send.event(payload).status_code == 200  # the same event_id once more

    final_edit_of(bot, placeholder_in(bot, payload["event"]["ts"]))
    bot.wait_idle()
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    with bot.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Answer)) == 1
        assert session.scalar(select(func.count()).select_from(SlackEvent)) == 1


def test_acks_return_at_once_while_the_model_is_generating(start_bot: StartBot) -> None:
    bot = start_bot(sampling=forced_answer(STREAMED), max_tokens=96)
    first = mention(COVERED)
    started = time.monotonic()
    assert bot.send.event(event_callback(first)).status_code == 200
    first_ack_s = time.monotonic() - started
    placeholder = placeholder_in(bot, first["ts"])

    # While the first answer streams, more events arrive; each is acknowledged at once.
    bot.slack.wait_for("chat.update", lambda c: c.args["ts"] == placeholder.response["ts"])
    ack_times = []
    first_extra_acked = 0.0
    for _ in range(3):
        started = time.monotonic()
        assert bot.send.event(event_callback(mention(COVERED))).status_code == 200
        ack_times.append(time.monotonic() - started)
        first_extra_acked = first_extra_acked or time.monotonic()
    final = final_edit_of(bot, placeholder)

    assert first_ack_s < 3.0
    assert max(ack_times) < 3.0, ack_times
    # The first answer was still streaming when the next event was acknowledged. (A short
    # answer may finish before the last ack; how long the model writes is not ours to say.)
    assert final.at > first_extra_acked - ack_times[0] - 0.001


def test_acks_do_not_wait_for_a_busy_store_and_the_event_is_still_handled_once(
    start_bot: StartBot,
) -> None:
    bot = start_bot()
    payload = event_callback(mention(COVERED))
    # Another writer holds SQLite's one write lock, as a burst of answers being logged does.
    writer = sqlite3.connect(bot.database.url.database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        first = bot.send.event(payload)
        retry = bot.send.event(payload, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "x"})
        acked_s = time.monotonic() - started
        # The listeners are blocked on the lock, so the bot is not idle: what is tested is
        # that for this long, while the lock is held, nothing reaches Slack.
        time.sleep(1.0)
        nothing_yet = bot.slack.calls_to("chat.postMessage")
    finally:
        writer.execute("ROLLBACK")
        writer.close()

    assert (first.status_code, retry.status_code) == (200, 200)
    assert acked_s < 1.0, "an ack waited for the store's write lock"
    assert nothing_yet == [], "the event was handled before its delivery was recorded"
    final_edit_of(bot, placeholder_in(bot, payload["event"]["ts"]))
    bot.wait_idle()
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    with bot.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(SlackEvent)) == 1


def test_a_model_outage_shows_an_apology_with_a_reference_and_keeps_the_question(
    start_bot: StartBot, dead_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    bot = start_bot(endpoints=[dead_endpoint])
    question = mention(COVERED)

    with caplog.at_level(logging.ERROR):
        assert bot.send.event(event_callback(question)).status_code == 200
        placeholder = placeholder_in(bot, question["ts"])
        apology = bot.slack.wait_for(
            "chat.update", lambda c: c.args["ts"] == placeholder.response["ts"]
        )[0]
        bot.wait_idle()  # the listener that logged and posted the apology has finished

    assert_valid_blocks(apology.args["blocks"])
    reference = re.search(r"`([0-9a-f]{8})`", block_text(apology))
    assert reference, block_text(apology)
    assert "saved" in block_text(apology)
    assert any(
        reference.group(1) in record.getMessage() and record.exc_info for record in caplog.records
    ), "the log has no error with the reference the user was shown"
    assert stored_messages(bot) == [("user", COVERED, question["ts"])]


def test_unsigned_stale_and_forged_requests_are_refused_without_side_effects(
    start_bot: StartBot,
) -> None:
    bot = start_bot()
    body = '{"type": "event_callback", "event_id": "Ev0FORGED", "event": {}}'
    sender = bot.send

    unsigned = sender.post(body, "application/json", {}, signature="v0=" + "0" * 64)
    stale = sender.post(body, "application/json", {}, timestamp=int(time.time()) - 600)
    wrong_secret = type(sender)(sender.events_url, secret="not-the-secret").post(
        body, "application/json", {}
    )

    assert [r.status_code for r in (unsigned, stale, wrong_secret)] == [401, 401, 401]
    with bot.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(SlackEvent)) == 0
    assert [c.method for c in bot.slack.calls] == ["auth.test"]


def test_health_check_and_unknown_paths(start_bot: StartBot) -> None:
    bot = start_bot()
    assert httpx.get(f"{bot.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{bot.url}/nothing-here").status_code == 404
    too_big = httpx.post(
        bot.send.events_url,
        content=b"x" * (1024 * 1024 + 1),
        headers={"Content-Type": "text/plain"},
    )
    assert too_big.status_code == 413


def test_answers_run_concurrently(start_bot: StartBot) -> None:
    bot = start_bot()
    questions = [mention(COVERED), mention("what's the SLA on a priority-1 reefer ticket?")]
    threads = [
        threading.Thread(target=bot.send.event, args=(event_callback(q),)) for q in questions
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    finals = [final_edit_of(bot, placeholder_in(bot, q["ts"])) for q in questions]
    placeholders = [placeholder_in(bot, q["ts"]) for q in questions]
    # The second placeholder went out before the first answer was finished.
    assert max(p.at for p in placeholders) < min(f.at for f in finals)
