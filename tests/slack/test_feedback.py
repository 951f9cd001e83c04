"""👍, 👎 with its reason, and "Ask a person", clicked on a real answer."""

from __future__ import annotations

import time

import pytest
from bot_harness import RunningBot, StartBot
from slack_mock import (
    SlackCall,
    assert_valid_blocks,
    block_action,
    event_callback,
    feedback_click,
    has_buttons,
    mention,
    view_submission,
)
from slack_sdk.models.views import View
from sqlalchemy import select

from bot.blocks import FEEDBACK_UP
from store.models import Feedback

QUESTION = "who approves a 30,000 lb load?"


@pytest.fixture
def answered(start_bot: StartBot) -> tuple[RunningBot, SlackCall, int]:
    """A bot that has answered one question: the bot, the final message, the answer id."""
    bot = start_bot(escalation_channel="C0ONCALL")
    question = mention(QUESTION)
    assert bot.send.event(event_callback(question)).status_code == 200
    final = bot.slack.wait_for("chat.update", has_buttons)[0]
    actions = next(b for b in final.args["blocks"] if b["type"] == "actions")
    return bot, final, int(actions["block_id"].removeprefix("answer:"))


UP, DOWN = 1, -1


def click(bot: RunningBot, final: SlackCall, vote: int, user: str = "U0ALICE") -> None:
    """A click on Slack's own 👍 or 👎 under the answer."""
    response = bot.send.interaction(feedback_click(final, vote, user=user))
    assert response.status_code == 200
    assert response.elapsed.total_seconds() < 3


def votes_become(bot: RunningBot, expected: list[tuple], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while votes(bot) != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def votes(bot: RunningBot) -> list[tuple[int, str, int, str | None, str | None]]:
    with bot.database.transaction() as session:
        rows = session.scalars(select(Feedback).order_by(Feedback.id)).all()
        return [(r.answer_id, r.user_id, r.value, r.reason_codes, r.reason) for r in rows]


def test_thumbs_up_is_stored_and_acknowledged_privately(
    answered: tuple[RunningBot, SlackCall, int],
) -> None:
    bot, final, answer_id = answered

    click(bot, final, UP)

    thanks = bot.slack.wait_for("chat.postEphemeral")[0]
    assert thanks.args["user"] == "U0ALICE"
    assert thanks.args["channel"] == final.args["channel"]
    assert votes(bot) == [(answer_id, "U0ALICE", 1, None, None)]


def test_thumbs_down_opens_the_reason_modal_and_the_reason_is_stored(
    answered: tuple[RunningBot, SlackCall, int],
) -> None:
    bot, final, answer_id = answered
    click(bot, final, UP)
    bot.slack.wait_for("chat.postEphemeral")

    click(bot, final, DOWN)  # a changed mind: the same row, now -1

    opened = bot.slack.wait_for("views.open")[0]
    view = opened.args["view"]
    View(**view).validate_json()
    # The modal opens first (its trigger expires in 3 s), then the vote is stored.
    assert votes_become(bot, [(answer_id, "U0ALICE", -1, None, None)])

    checkboxes, note = _inputs(view)
    values = {
        checkboxes["block_id"]: {
            checkboxes["element"]["action_id"]: {
                "type": "checkboxes",
                "selected_options": [
                    option
                    for option in checkboxes["element"]["options"]
                    if option["value"] in ("wrong", "out_of_date")
                ],
            }
        },
        note["block_id"]: {
            note["element"]["action_id"]: {
                "type": "plain_text_input",
                "value": "  The 26,001 lb band moved to the shift lead in March.  ",
            }
        },
    }
    response = bot.send.interaction(view_submission(view, values, user="U0ALICE"))

    assert response.status_code == 200
    assert response.text == ""  # an empty ack closes the modal
    bot.slack.wait_for("chat.postEphemeral", count=2)
    assert votes(bot) == [
        (
            answer_id,
            "U0ALICE",
            -1,
            "wrong,out_of_date",
            "The 26,001 lb band moved to the shift lead in March.",
        )
    ]


def test_votes_are_one_per_user(answered: tuple[RunningBot, SlackCall, int]) -> None:
    bot, final, _ = answered

    click(bot, final, UP, user="U0ALICE")
    click(bot, final, UP, user="U0BOB")
    click(bot, final, UP, user="U0ALICE")

    bot.slack.wait_for("chat.postEphemeral", count=3)
    assert sorted((user, value) for _, user, value, _, _ in votes(bot)) == [
        ("U0ALICE", 1),
        ("U0BOB", 1),
    ]


def test_a_click_on_an_answer_that_is_gone_is_explained(
    answered: tuple[RunningBot, SlackCall, int],
) -> None:
    bot, final, answer_id = answered
    gone = {**final.args, "blocks": _with_answer_id(final.args["blocks"], answer_id + 999)}

    click(bot, SlackCall("chat.update", gone, final.at, final.response), UP)

    note = bot.slack.wait_for("chat.postEphemeral")[0]
    assert "no longer on record" in note.args["text"]
    assert votes(bot) == []


def _inputs(view: dict) -> tuple[dict, dict]:
    inputs = [block for block in view["blocks"] if block["type"] == "input"]
    checkboxes = next(b for b in inputs if b["element"]["type"] == "checkboxes")
    note = next(b for b in inputs if b["element"]["type"] == "plain_text_input")
    return checkboxes, note


def _with_answer_id(blocks: list[dict], answer_id: int) -> list[dict]:
    result = []
    for block in blocks:
        if block["type"] == "context_actions":
            [feedback] = block["elements"]
            feedback = {
                **feedback,
                "positive_button": {**feedback["positive_button"], "value": f"up:{answer_id}"},
                "negative_button": {**feedback["negative_button"], "value": f"down:{answer_id}"},
            }
            block = {**block, "elements": [feedback]}
        result.append(block)
    assert_valid_blocks(result)
    return result


def test_the_buttons_of_answers_posted_before_feedback_buttons_still_count(
    answered: tuple[RunningBot, SlackCall, int],
) -> None:
    bot, final, answer_id = answered
    payload = block_action(
        FEEDBACK_UP,
        str(answer_id),
        channel=final.args["channel"],
        message_ts=final.args["ts"],
        thread_ts=final.args["ts"],
    )

    assert bot.send.interaction(payload).status_code == 200

    assert votes_become(bot, [(answer_id, "U0ALICE", 1, None, None)])
