"""No failure is silent, and none loses what a person did.

Every registered listener, with the store gone from under it, logs a traceback under the
request id and tells the person privately, quoting that id. Every Slack call a vote, a
hand-off, a claim and a resolution make, failing in turn (an error, a 429 past the retries,
a dropped connection), leaves the vote, escalation, claim or resolution stored.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bot_harness import MakeParts, RunningBot, StartBot
from seeding import seed_answer, seed_escalation
from slack_bolt import App
from slack_mock import (
    MockSlack,
    SlackCall,
    app_home_opened,
    block_action,
    event_callback,
    mention,
    message,
    next_ts,
    view_submission,
)
from slack_sdk import WebClient
from sqlalchemy import select

from bot.blocks import ASK_PERSON, FEEDBACK, FEEDBACK_DOWN, FEEDBACK_UP, feedback_reason_modal
from bot.escalation_blocks import (
    ESCALATION_CLAIM,
    ESCALATION_RESOLVE,
    RESOLUTION_BLOCK,
    RESOLVE_VIEW,
    VerifiedChoice,
    resolve_modal,
)
from bot.home_blocks import VERIFIED_APPROVE, VERIFIED_RETIRE
from bot.listeners import register_listeners
from bot.listeners.registry import Trigger
from store.models import Escalation, EscalationStatus, Feedback

ASKER = "U0ALICE"
ONCALL = "C0ONCALL"
DISPATCHER = "U0DISPATCHER"
ADMIN = "U0ADMIN"
REFERENCE = re.compile(r"reference `([0-9a-f]{8})`")

FAILURES: dict[str, dict[str, Any]] = {
    "error": {"ok": False, "error": "internal_error"},
    "429": {"ok": False, "error": "ratelimited", "_http_status": 429, "_retry_after": 0},
    "dropped": {"_drop": True},
}


@pytest.fixture
def bot(start_bot: StartBot, dead_endpoint: str) -> RunningBot:
    """No model: these listeners never reach one, and a question fails before it would."""
    return start_bot(
        endpoints=[dead_endpoint], escalation_channel=ONCALL, slack_admin_users=[ADMIN]
    )


def registered_triggers(make_parts: MakeParts, dead_endpoint: str, slack: MockSlack) -> list:
    services = make_parts(endpoints=[dead_endpoint]).services
    app = App(
        client=WebClient(token="xoxb-test", base_url=slack.api_url),
        signing_secret="unused",
        token_verification_enabled=False,
    )
    return register_listeners(app, services).triggers


def click(action_id: str, value: str, *, user: str = ASKER, channel: str = "C0DISPATCH") -> dict:
    ts = next_ts()
    return block_action(action_id, value, channel=channel, message_ts=ts, thread_ts=ts, user=user)


def resolve_submission(escalation_id: int, answer: str) -> dict[str, Any]:
    choice = VerifiedChoice(question="", audiences=("dispatch",), audience="dispatch",
                            save_by_default=False)  # fmt: skip
    view = resolve_modal(escalation_id, None, choice)
    [field] = [block for block in view["blocks"] if block.get("block_id") == RESOLUTION_BLOCK]
    values = {
        RESOLUTION_BLOCK: {
            field["element"]["action_id"]: {"type": "plain_text_input", "value": answer}
        }
    }
    return view_submission(view, values, user=DISPATCHER)


def reason_submission(answer_id: int, thread_ts: str) -> dict[str, Any]:
    view = feedback_reason_modal(answer_id, "C0DISPATCH", thread_ts)
    return view_submission(view, {}, user=ASKER)


def payloads(answer_id: int, thread_ts: str, escalation_id: int) -> dict[str, Callable[[], dict]]:
    """One request per trigger, as Slack would send it."""
    return {
        "app_mention": lambda: event_callback(mention("who approves a 30,000 lb load?")),
        "message": lambda: event_callback(message("what's the SLA?", channel="D0ALICE")),
        "app_home_opened": lambda: event_callback(app_home_opened(user=ADMIN)),  # the store
        FEEDBACK: lambda: click(FEEDBACK, f"down:{answer_id}"),
        FEEDBACK_UP: lambda: click(FEEDBACK_UP, str(answer_id)),
        FEEDBACK_DOWN: lambda: click(FEEDBACK_DOWN, str(answer_id)),
        "feedback_reason": lambda: reason_submission(answer_id, thread_ts),
        ASK_PERSON: lambda: click(ASK_PERSON, str(answer_id)),
        ESCALATION_CLAIM: lambda: click(
            ESCALATION_CLAIM, str(escalation_id), user=DISPATCHER, channel=ONCALL
        ),
        ESCALATION_RESOLVE: lambda: click(
            ESCALATION_RESOLVE, str(escalation_id), user=DISPATCHER, channel=ONCALL
        ),
        RESOLVE_VIEW: lambda: resolve_submission(escalation_id, "Refuse it on the BOL."),
        VERIFIED_APPROVE: lambda: click(VERIFIED_APPROVE, "1", user=ADMIN),
        VERIFIED_RETIRE: lambda: click(VERIFIED_RETIRE, "1", user=ADMIN),
    }


def send(bot: RunningBot, payload: dict[str, Any]) -> None:
    if payload.get("type") == "event_callback":
        response = bot.send.event(payload)
    else:
        response = bot.send.interaction(payload)
    assert response.status_code == 200, response.text


def user_of(payload: dict[str, Any]) -> str:
    return str(payload["event"]["user"] if "event" in payload else payload["user"]["id"])


def told(call: SlackCall, user: str) -> str | None:
    """The reference quoted to `user` by this call, if it is a note only they see (an
    ephemeral message, their DM or thread, their Home tab)."""
    args = call.args
    to_them = (
        args.get("user") == user
        or args.get("user_id") == user
        or args.get("channel") in (user, "D0ALICE")
        or call.method in ("chat.update", "chat.postMessage")  # the asker's own thread
    )
    found = REFERENCE.search(json.dumps(args))
    return found.group(1) if found and to_them else None


def private_note(call: SlackCall, user: str) -> bool:
    return (
        call.method == "chat.postEphemeral"
        and call.args.get("user") == user
        and bool(REFERENCE.search(str(call.args.get("text"))))
    )


def notes(bot: RunningBot, since: int, person: str) -> list[str]:
    """The references quoted to `person` in Slack calls from the `since`th on."""
    return [ref for call in bot.slack.calls[since:] if (ref := told(call, person)) is not None]


def break_the_store(bot: RunningBot) -> None:
    """The SQLite file disappears under the running bot: every query fails from now on."""
    path = Path(str(bot.database.url.database))
    path.rename(path.with_suffix(".gone"))
    bot.database.engine.dispose()
    path.mkdir()  # a folder where the file was: SQLite cannot open it


def test_every_listener_that_fails_logs_a_traceback_and_tells_the_person(
    bot: RunningBot, make_parts: MakeParts, dead_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    triggers: list[Trigger] = registered_triggers(make_parts, dead_endpoint, bot.slack)
    answer_id, thread_ts = seed_answer(bot.database)
    escalation_id, _ = seed_escalation(bot.database, "the receiver refuses the load")
    requests = payloads(answer_id, thread_ts, escalation_id)
    assert {trigger.name for trigger in triggers} == set(requests), "a listener without a case"
    break_the_store(bot)
    caplog.set_level(logging.INFO)

    for trigger in triggers:
        payload = requests[trigger.name]()
        seen = len(bot.slack.calls)
        send(bot, payload)
        person = user_of(payload)
        assert wait_until(lambda seen=seen, person=person: notes(bot, seen, person), timeout=30), (
            f"{trigger.name}: nobody was told"
        )
        reference = notes(bot, seen, person)[0]
        logged = [
            record
            for record in caplog.records
            if record.exc_info and f"request={reference}" in record.getMessage()
        ]
        assert logged, f"{trigger.name}: no traceback logged under request={reference}"


@pytest.mark.parametrize("method", ["chat.postEphemeral", "views.open"])
@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_votes_are_stored_whichever_slack_call_fails(
    bot: RunningBot, failure: str, method: str
) -> None:
    bot.slack.responses[method] = FAILURES[failure]
    answer_id, thread_ts = seed_answer(bot.database)
    # One at a time: the reason replaces the asker's 👍 with a 👎.
    for payload, expected in [
        (click(FEEDBACK_UP, str(answer_id)), [(ASKER, 1)]),
        (click(FEEDBACK_DOWN, str(answer_id), user="U0BOB"), [(ASKER, 1), ("U0BOB", -1)]),
        (reason_submission(answer_id, thread_ts), [(ASKER, -1), ("U0BOB", -1)]),
    ]:
        send(bot, payload)
        assert wait_until(lambda expected=expected: votes(bot, answer_id) == expected), (
            f"lost a vote: {votes(bot, answer_id)}"
        )


@pytest.mark.parametrize(
    "method", ["chat.postMessage", "chat.getPermalink", "chat.update", "chat.postEphemeral"]
)
@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_hand_offs_claims_and_resolutions_are_stored_whichever_slack_call_fails(
    bot: RunningBot, failure: str, method: str
) -> None:
    bot.slack.responses[method] = FAILURES[failure]
    answer_id, _ = seed_answer(bot.database)
    send(bot, click(ASK_PERSON, str(answer_id)))
    assert wait_until(lambda: escalation_of(bot, answer_id) is not None), "lost a hand-off"
    escalation_id = escalation_of(bot, answer_id)
    assert escalation_id is not None
    send(bot, click(ESCALATION_CLAIM, str(escalation_id), user=DISPATCHER, channel=ONCALL))
    assert wait_until(lambda: status_of(bot, escalation_id) == EscalationStatus.CLAIMED), (
        "lost a claim"
    )
    send(bot, resolve_submission(escalation_id, "Refuse it on the BOL."))
    assert wait_until(lambda: status_of(bot, escalation_id) == EscalationStatus.RESOLVED), (
        "lost a resolution"
    )
    # Told, unless what failed is the one way to tell them, or no failure (a card without
    # the thread's link).
    if method not in ("chat.postEphemeral", "chat.getPermalink"):
        assert wait_until(lambda: any(private_note(call, DISPATCHER) for call in bot.slack.calls))
    if method == "chat.postMessage":  # the hand-off's notice and card
        assert wait_until(lambda: any(private_note(call, ASKER) for call in bot.slack.calls))


def votes(bot: RunningBot, answer_id: int) -> list[tuple[str, int]]:
    with bot.database.transaction() as session:
        rows = session.scalars(
            select(Feedback).where(Feedback.answer_id == answer_id).order_by(Feedback.id)
        ).all()
        return [(row.user_id, row.value) for row in rows]


def escalation_of(bot: RunningBot, answer_id: int) -> int | None:
    with bot.database.transaction() as session:
        return session.scalar(select(Escalation.id).where(Escalation.answer_id == answer_id))


def status_of(bot: RunningBot, escalation_id: int) -> EscalationStatus:
    with bot.database.transaction() as session:
        return session.get_one(Escalation, escalation_id).status


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
