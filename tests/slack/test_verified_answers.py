"""What reaches Slack is checked first: an invented number never shows, the policy's own words
always stand under the answer. The real vLLM writes a given text (structured outputs), so the
tests do not depend on what a 135M model happens to write."""

from __future__ import annotations

from bot_harness import RunningBot, StartBot
from metrics_support import scrape
from slack_mock import (
    SlackCall,
    assert_valid_blocks,
    block_text,
    event_callback,
    mention,
    streamed_markdown,
)
from sqlalchemy import select
from test_questions import ask_and_wait
from vllm_support import forced_answer

from serving.assistant import POLICY_WORDS_LEAD
from store.models import Answer, Message

COVERED = "who approves a 30,000 lb load?"
INVENTED = "Call the load desk at 1-800-555-0199 to get it approved."
RIGHT = "The shift lead on duty approves it, at the dispatch desk, ext. 4411."


def _everything_shown(bot: RunningBot) -> str:
    """The text of every message the bot posted, edited or streamed."""
    methods = ("chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream")
    shown = []
    for method in methods:
        for call in bot.slack.calls_to(method):
            shown += [str(call.args.get("text", "")), str(call.args.get("markdown_text", ""))]
            shown.append(block_text(call))
    for call in bot.slack.calls_to("chat.stopStream"):
        shown.append(block_text(call))
    shown.append(streamed_markdown(bot.slack.calls))
    return "\n".join(shown)


def _stored(bot: RunningBot, reply_ts: str) -> Answer:
    with bot.database.transaction() as session:
        answer = session.scalars(
            select(Answer).join(Message).where(Message.slack_ts == reply_ts)
        ).one()
        _ = answer.message.text  # loaded while the session is open
        session.expunge(answer)
        return answer


def _assert_policy_words_under(final: SlackCall) -> None:
    text = block_text(final)
    assert "Shift lead on duty" in text
    assert "Dispatch desk, ext. 4411" in text
    assert "Load Approval Thresholds" in text
    assert "v3" in text
    assert_valid_blocks(final.args["blocks"])


def test_an_unsupported_number_never_reaches_slack_and_the_policy_words_stand_instead(
    start_bot: StartBot,
) -> None:
    bot = start_bot(sampling=forced_answer(INVENTED))
    failed = "dispatchbot_answer_verifications_total"
    failed_before = scrape(bot.url).value(failed, outcome="unsupported_claim")

    placeholder, final = ask_and_wait(bot, mention(COVERED))

    assert "555-0199" not in _everything_shown(bot)
    assert block_text(final).startswith(POLICY_WORDS_LEAD)
    _assert_policy_words_under(final)
    stored = _stored(bot, placeholder.response["ts"])
    assert stored.message.text == POLICY_WORDS_LEAD  # what the person saw
    # What the model wrote, up to where it was stopped: the rest would have been replaced.
    assert stored.generated_text.startswith("Call the load desk at 1-800-555-0199")
    assert stored.verification == {
        "outcome": "unsupported_claim",
        "found": ["1-800-555-0199"],
        "cut_at_repeat": False,
    }
    assert stored.quote is not None
    assert stored.quote["doc_id"] == "load-approval"
    assert scrape(bot.url).value(failed, outcome="unsupported_claim") == failed_before + 1


def test_a_verified_answer_is_shown_with_the_policy_words_under_it(start_bot: StartBot) -> None:
    bot = start_bot(sampling=forced_answer(RIGHT))

    placeholder, final = ask_and_wait(bot, mention(COVERED))

    assert block_text(final).startswith(RIGHT)
    _assert_policy_words_under(final)
    stored = _stored(bot, placeholder.response["ts"])
    assert stored.message.text == RIGHT
    assert stored.verification is not None
    assert stored.verification["outcome"] == "passed"


def test_a_native_stream_never_carries_an_unsupported_number(start_bot: StartBot) -> None:
    bot = start_bot(slack_native_streaming=True, sampling=forced_answer(INVENTED))
    question = mention(COVERED)

    assert bot.send.event(event_callback(question)).status_code == 200
    stopped = bot.slack.wait_for("chat.stopStream")[0]

    assert "555-0199" not in _everything_shown(bot)
    assert streamed_markdown(bot.slack.calls).startswith(POLICY_WORDS_LEAD)
    _assert_policy_words_under(stopped)


def test_an_answer_naming_the_wrong_table_row_is_replaced(start_bot: StartBot) -> None:
    bot = start_bot(sampling=forced_answer("The dispatcher approves it."))

    placeholder, final = ask_and_wait(bot, mention(COVERED))

    assert block_text(final).startswith(POLICY_WORDS_LEAD)
    _assert_policy_words_under(final)
    stored = _stored(bot, placeholder.response["ts"])
    assert stored.verification is not None
    assert stored.verification["outcome"] == "wrong_row"
