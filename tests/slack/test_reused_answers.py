"""People's answers answer the next person, through Slack: a resolution saved as a verified
answer in the resolve modal answers the same question in a new thread with no model call,
credited to its author; an answer resolved where HR policy may be read never reaches a
channel without that audience."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bot_harness import RunningBot, StartBot
from policy_store_support import ingested_search
from slack_mock import (
    SlackCall,
    app_home_opened,
    assert_valid_blocks,
    block_action,
    block_text,
    event_callback,
    has_buttons,
    mention,
    view_submission,
)
from slack_sdk.models.views import View
from sqlalchemy import select
from vllm_support import CannedChatServer

from bot.blocks import ASK_PERSON
from bot.escalation_blocks import ESCALATION_RESOLVE
from bot.home_blocks import VERIFIED_APPROVE
from bot.policy_admin import ingest_policies, keep_verified_current
from retrieval.search import PolicySearch
from store.models import Answer, VerifiedAnswer, VerifiedAnswerStatus

POLICIES = Path(__file__).resolve().parents[2] / "examples" / "policies"
QUESTION = "who approves a 30,000 lb load?"
ONCALL = "C0ONCALL"
HR_CHANNEL = "C0HRDESK"
RESOLVER = "U0SHIFTLEAD"
ADMIN = "U0OPSADMIN"
PERSON_ANSWER = "The shift lead on duty signs it off in the TMS; the desk is on ext. 4411."


@pytest.fixture
def search(tmp_path: Path) -> Iterator[PolicySearch]:
    """A store of its own: verified answers indexed here stay out of other tests."""
    with ingested_search(tmp_path, [POLICIES / "load-approval.md"]) as search:
        yield search


@pytest.fixture
def model() -> Iterator[CannedChatServer]:
    server = CannedChatServer(["The shift lead on duty approves it [1]."])
    yield server
    server.close()


@pytest.fixture
def bot(start_bot: StartBot, search: PolicySearch, model: CannedChatServer) -> RunningBot:
    return start_bot(
        endpoints=[model.url],
        search=search,
        escalation_channel=ONCALL,
        audience_channels={HR_CHANNEL: ["hr"]},
    )


def final_answer(bot: RunningBot, question: dict[str, Any]) -> SlackCall:
    return bot.slack.wait_for(
        "chat.update",
        lambda c: (
            has_buttons(c)
            and c.args["channel"] == question["channel"]
            and c.args["ts"] in _replies_to(bot, question)
        ),
    )[-1]


def _replies_to(bot: RunningBot, question: dict[str, Any]) -> set[str]:
    return {
        str(c.response.get("ts"))
        for c in bot.slack.calls_to("chat.postMessage")
        if c.args.get("thread_ts") == question["ts"]
    }


def escalate_and_resolve(bot: RunningBot, channel: str) -> dict[str, Any]:
    """Ask in `channel`, press "Ask a person", resolve with the box left as offered."""
    question = mention(QUESTION, channel=channel)
    bot.send.event(event_callback(question))
    final = final_answer(bot, question)
    answer_id = next(b for b in final.args["blocks"] if b["type"] == "actions")["block_id"]
    bot.send.interaction(
        block_action(
            ASK_PERSON,
            answer_id.removeprefix("answer:"),
            channel=channel,
            message_ts=final.args["ts"],
            thread_ts=question["ts"],
        )
    )
    cards = bot.slack.wait_for("chat.postMessage", lambda c: c.args["channel"] == ONCALL)
    card = cards[-1]
    bot.send.interaction(
        block_action(
            ESCALATION_RESOLVE,
            str(_button_value(card, ESCALATION_RESOLVE)),
            channel=ONCALL,
            message_ts=card.response["ts"],
            thread_ts=card.response["ts"],
            user=RESOLVER,
        )
    )
    modal = bot.slack.wait_for("views.open")[-1].args["view"]
    bot.send.interaction(view_submission(modal, as_offered(modal), user=RESOLVER))
    return modal


def as_offered(modal: dict[str, Any]) -> dict[str, Any]:
    """What Slack sends back when the resolver writes the answer and changes nothing else."""
    values: dict[str, Any] = {}
    for block in modal["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        state: dict[str, Any] = {"type": element["type"]}
        if element["type"] == "plain_text_input":
            initial = element.get("initial_value")
            state["value"] = PERSON_ANSWER if block["block_id"] == "resolution" else initial
        elif element["type"] == "checkboxes":
            state["selected_options"] = element.get("initial_options", [])
        elif element["type"] == "static_select":
            state["selected_option"] = element.get("initial_option")
        elif element["type"] == "datepicker":
            state["selected_date"] = None
        values[block["block_id"]] = {element["action_id"]: state}
    return values


def _button_value(card: SlackCall, action_id: str) -> str:
    return next(
        element["value"]
        for block in card.args["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == action_id
    )


def saved(bot: RunningBot, count: int = 1) -> list[VerifiedAnswer]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with bot.database.transaction() as session:
            rows = list(session.scalars(select(VerifiedAnswer).order_by(VerifiedAnswer.id)))
            session.expunge_all()
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    pytest.fail("no verified answer was saved")


def test_a_resolution_saved_as_verified_answers_the_next_person_with_no_model_call(
    bot: RunningBot, model: CannedChatServer
) -> None:
    modal = escalate_and_resolve(bot, "C0DISPATCH")
    # The resolution's listener stores it, then makes it searchable: wait until it is done.
    bot.wait_idle()
    [verified] = saved(bot)
    calls_before = len(model.requests)

    again = mention("Who approves a 30,000 lb load", channel="C0DISPATCH")
    started = time.monotonic()
    bot.send.event(event_callback(again))
    final = final_answer(bot, again)
    elapsed_s = time.monotonic() - started

    assert {b.get("block_id") for b in modal["blocks"]} >= {"verify", "verified_audience"}
    assert (verified.question, verified.answer, verified.author) == (
        QUESTION,
        PERSON_ANSWER,
        RESOLVER,
    )
    assert verified.audience == "dispatch"  # the load policy's audience
    assert [ref["doc_id"] for ref in verified.policy_refs] == ["load-approval"]
    assert_valid_blocks(final.args["blocks"])
    shown = block_text(final)
    assert "ext. 4411" in shown
    assert f"<@{RESOLVER}>" in shown
    assert "verified" in shown
    assert "Load Approval Thresholds" in shown  # the policy it rests on, cited
    assert len(model.requests) == calls_before, "no model call"
    with bot.database.transaction() as session:
        last = session.scalars(select(Answer).order_by(Answer.id.desc())).first()
        assert last is not None
        assert last.verified_answer_id == verified.id
    print(f"verified answer shown {elapsed_s * 1000:.0f} ms after the event")


def test_an_answer_resolved_for_hr_never_reaches_a_channel_without_hr(
    bot: RunningBot, model: CannedChatServer
) -> None:
    escalate_and_resolve(bot, HR_CHANNEL)
    bot.wait_idle()
    [verified] = saved(bot)

    in_dispatch = mention(QUESTION, channel="C0DISPATCH")
    bot.send.event(event_callback(in_dispatch))
    dispatch_final = final_answer(bot, in_dispatch)
    in_hr = mention(QUESTION, channel=HR_CHANNEL)
    bot.send.event(event_callback(in_hr))
    hr_final = final_answer(bot, in_hr)

    assert verified.audience == "hr"
    assert PERSON_ANSWER not in block_text(dispatch_final)
    assert f"<@{RESOLVER}>" not in block_text(dispatch_final)
    assert PERSON_ANSWER in block_text(hr_final)
    assert all(PERSON_ANSWER not in str(request) for request in model.requests)


def test_a_stale_verified_answer_is_reviewed_from_the_admins_home_tab(
    start_bot: StartBot, search: PolicySearch, model: CannedChatServer, tmp_path: Path
) -> None:
    bot = start_bot(
        endpoints=[model.url],
        search=search,
        escalation_channel=ONCALL,
        slack_admin_users=[ADMIN],
    )
    escalate_and_resolve(bot, "C0DISPATCH")
    [verified] = saved(bot)
    changed = tmp_path / "load-approval-v4.md"
    text = (POLICIES / "load-approval.md").read_text(encoding="utf-8")
    changed.write_text(text.replace("version: 3", "version: 4", 1), encoding="utf-8")
    ingest_policies([changed], search.store, search.embedder, bot.settings)
    assert keep_verified_current(bot.database, search.store) == [verified.id]

    bot.send.event(event_callback(app_home_opened(user=ADMIN, tab="home")))
    home = bot.slack.wait_for("views.publish", lambda c: c.args["user_id"] == ADMIN)[-1]
    shown = json.dumps(home.args["view"])
    bot.send.interaction(
        block_action(
            VERIFIED_APPROVE,
            str(verified.id),
            channel=ADMIN,
            message_ts="0",
            thread_ts="0",
            user=ADMIN,
        )
    )
    bot.slack.wait_for("views.publish", lambda c: c.args["user_id"] == ADMIN, count=2)

    View(**home.args["view"]).validate_json()
    assert "Verified answers to review" in shown
    assert "v3 is no longer current (now v4)" in shown
    assert f"#{verified.id}" in shown
    [approved] = saved(bot)
    assert approved.status is VerifiedAnswerStatus.ACTIVE
    assert approved.reviewed_by == ADMIN
    assert [m.entry.verified_id for m in search.verified_matches(QUESTION)] == [verified.id]
