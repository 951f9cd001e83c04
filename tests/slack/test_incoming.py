"""Which Slack messages are questions, and how their Slack markup reads as plain text."""

from __future__ import annotations

import pytest

from bot.channels import ChannelPolicy
from bot.incoming import plain_text, question_from_event

BOT = "UBOT0001"


def _event(**fields: object) -> dict[str, object]:
    return {"type": "message", "user": "U0ALICE", "text": "hi", "ts": "1.1", "channel": "C1"} | (
        fields
    )


def test_slack_markup_reads_as_plain_text() -> None:
    text = (
        f"<@{BOT}> is <https://tms.example/load/42|load 42> over &lt;40k&gt; &amp; ok? "
        "ask <@U0BOB> in <#C0DISP|dispatch> <!here> see <https://tms.example/x>"
    )
    assert plain_text(text, BOT) == (
        "is load 42 (https://tms.example/load/42) over <40k> & ok? "
        "ask @U0BOB in #dispatch @here see https://tms.example/x"
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"subtype": "message_changed"},
        {"subtype": "message_deleted"},
        {"subtype": "bot_message"},
        {"subtype": "channel_join"},
        {"bot_id": "B0OTHER"},
        {"user": BOT},
        {"user": None},
        {"text": f"<@{BOT}>"},  # nothing asked
        {"text": None},
        {"channel": None},
    ],
)
def test_events_that_are_not_questions(fields: dict[str, object]) -> None:
    assert question_from_event(_event(**fields), team_id="T1", bot_user_id=BOT) is None


def test_a_question_knows_its_thread_and_who_it_mentions() -> None:
    root = question_from_event(
        _event(text=f"<@{BOT}> who approves?"), team_id="T1", bot_user_id=BOT
    )
    reply = question_from_event(
        _event(text="<@U0BOB> thanks", ts="2.2", thread_ts="1.1", team="T0OTHER"),
        team_id="T1",
        bot_user_id=BOT,
    )
    dm = question_from_event(_event(channel="D1", channel_type="im"), team_id="T1", bot_user_id=BOT)

    assert root is not None
    assert (root.text, root.thread_ts, root.in_thread, root.mentions_bot) == (
        "who approves?",
        "1.1",
        False,
        True,
    )
    assert reply is not None
    assert (reply.thread_ts, reply.in_thread, reply.mentions_someone_else) == ("1.1", True, True)
    assert reply.team_id == "T1"  # the workspace, even for a guest from a shared channel
    assert dm is not None
    assert dm.is_direct_message


@pytest.mark.parametrize(
    ("text", "acknowledgement"),
    [
        ("thanks!", True),
        ("Thank you", True),
        ("ok", True),
        ("got it 👍", True),
        (":+1:", True),
        ("thanks, and what about 41k?", False),
        ("ok so who signs off on hazmat?", False),
    ],
)
def test_thanks_are_not_questions(text: str, acknowledgement: bool) -> None:
    question = question_from_event(_event(text=text), team_id="T1", bot_user_id=BOT)
    assert question is not None
    assert question.is_acknowledgement is acknowledgement


def test_channel_policy() -> None:
    everywhere = ChannelPolicy(frozenset(), frozenset({"C0HELP"}))
    allow_list = ChannelPolicy(frozenset({"C0DISP"}), frozenset({"C0HELP"}))
    asked_in = {
        channel: question_from_event(_event(channel=channel), team_id="T1", bot_user_id=BOT)
        for channel in ("C0DISP", "C0HELP", "D0DM")
    }

    assert all(everywhere.answers_in(q) for q in asked_in.values() if q)
    assert [allow_list.answers_in(q) for q in asked_in.values() if q] == [True, False, True]
    assert everywhere.takes_every_message_in("C0HELP")
    assert not everywhere.takes_every_message_in("C0DISP")
    assert not allow_list.takes_every_message_in("C0HELP")  # listening needs answering too
