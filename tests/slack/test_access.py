"""Restricted policies stay where they may be read: every way into an HR-only document from
a place that may not read it (a mention in another channel, a DM by someone outside the
group, a thread whose channel lost the audience, the on-call card, a group lookup Slack
refuses) and a document for an audience granted nowhere. Each test asserts on what reached
Slack and on the prompt the model was given, never on the model's wording."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from bot_harness import RunningBot, StartBot
from policy_store_support import ingested_search
from slack_mock import SlackCall, block_text, event_callback, has_buttons, mention, message
from slack_sdk import WebClient
from sqlalchemy import select

from bot.access import FAILED_LOOKUP_RETRY_S, MEMBERSHIP_TTL_S, AudiencePolicy
from bot.escalation import DRAFT_HIDDEN
from bot.incoming import Question
from bot.mrkdwn import to_mrkdwn
from retrieval.search import PolicySearch
from store.models import Answer, Message
from store.settings import Settings

# Restricted: only what the HR channel and the HR group may read.
DISCIPLINE = """---
doc_id: driver-discipline
title: Driver Discipline Points
version: 1
effective_from: 2025-05-01
audience: hr
---
# Driver Discipline Points

## Points per event

A preventable accident adds 6 points to a driver's record; handheld phone use adds 8.
At 20 points Human Resources reviews the case for termination on form HR-417.
"""
# For an audience no setting grants.
BUDGET = """---
doc_id: budget-freeze
title: Year-End Budget Freeze
version: 1
effective_from: 2025-01-01
audience: finance
---
# Year-End Budget Freeze

## Purchase orders

From 1 December no purchase order over $2,000 is raised without form FIN-88 signed by
the controller.
"""
YARD = """---
doc_id: yard-safety
title: Yard Safety
version: 1
effective_from: 2025-01-01
audience: all
---
# Yard Safety

## Speed and vests

The speed limit in the yard is 5 mph. Everyone on foot in the yard wears a hi-vis vest.
"""
RESTRICTED_MARKS = ("Driver Discipline Points", "HR-417", "Year-End Budget Freeze", "FIN-88")

HR_QUESTION = "how many points does handheld phone use add to a driver's discipline record?"
BUDGET_QUESTION = "can I raise a purchase order over $2,000 during the year-end budget freeze?"
HR_CHANNEL = "C0HR"
ONCALL = "C0ONCALL"
HR_LEAD = "U0HRLEAD"
HR_GROUP = "S0HR"


@pytest.fixture(scope="module")
def policy_search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicySearch]:
    """This module's library: one restricted policy, one for nobody, one for everyone."""
    folder = tmp_path_factory.mktemp("policies")
    paths = []
    for name, text in (("discipline.md", DISCIPLINE), ("budget.md", BUDGET), ("yard.md", YARD)):
        paths.append(folder / name)
        paths[-1].write_text(text, encoding="utf-8")
    with ingested_search(tmp_path_factory.mktemp("store"), paths) as search:
        yield search


def start(start_bot: StartBot, **overrides: Any) -> RunningBot:
    settings: dict[str, Any] = {
        "audience_default": [],
        "audience_channels": {HR_CHANNEL: ["hr"]},
        "max_tokens": 16,
    }
    return start_bot(**(settings | overrides))


def ask(bot: RunningBot, event: dict[str, Any]) -> tuple[SlackCall, Answer]:
    """Send a question; its final answer message and the answer's row."""
    thread_ts = event.get("thread_ts") or event["ts"]

    def final_in_thread(call: SlackCall) -> bool:
        return (
            has_buttons(call)
            and call.args["channel"] == event["channel"]
            and _in(bot, call, thread_ts)
        )

    earlier = len([call for call in bot.slack.calls_to("chat.update") if final_in_thread(call)])
    assert bot.send.event(event_callback(event)).status_code == 200
    final = bot.slack.wait_for("chat.update", final_in_thread, count=earlier + 1)[-1]
    with bot.database.transaction() as session:
        answer = session.scalars(
            select(Answer).join(Message).where(Message.slack_ts == final.args["ts"])
        ).one()
        session.expunge(answer)
    return final, answer


def _in(bot: RunningBot, update: SlackCall, thread_ts: str) -> bool:
    placeholders = bot.slack.calls_to("chat.postMessage")
    return any(
        call.response.get("ts") == update.args["ts"] and call.args.get("thread_ts") == thread_ts
        for call in placeholders
    )


def prompt_text(answer: Answer) -> str:
    """What the model was given, as plain text (empty when it was not called)."""
    if not answer.prompt:
        return ""
    return "\n".join(turn["content"] for turn in json.loads(answer.prompt))


def shown_in_slack(bot: RunningBot, since: int = 0) -> str:
    """Everything the bot sent to Slack (from the `since`-th call on): texts and blocks."""
    return "\n".join(
        f"{call.args.get('text', '')}\n{block_text(call)}"
        for call in list(bot.slack.calls)[since:]
        if call.method.startswith(("chat.", "views."))
    )


def assert_nothing_restricted(bot: RunningBot, *answers: Answer, since: int = 0) -> None:
    shown = shown_in_slack(bot, since)
    for mark in RESTRICTED_MARKS:
        assert mark not in shown
        for answer in answers:
            assert mark not in prompt_text(answer)


def cites(final: SlackCall, title: str) -> bool:
    return title in block_text(final)


# --- the policy itself -------------------------------------------------------------------


class _GroupsAPI:
    """usergroups.users.list as Slack answers it, counting the calls."""

    def __init__(self, members: dict[str, list[str]] | None) -> None:
        self.members = members
        self.calls = 0

    def usergroups_users_list(self, *, usergroup: str) -> dict[str, Any]:
        self.calls += 1
        if self.members is None:
            raise OSError("connection refused")
        return {"ok": True, "users": self.members.get(usergroup, [])}


def question(channel: str, user: str) -> Question:
    return Question(
        team_id="T0",
        channel_id=channel,
        user_id=user,
        text="?",
        ts="1.1",
        thread_ts="1.1",
        is_direct_message=channel.startswith("D"),
        channel_type="im" if channel.startswith("D") else "channel",
        in_thread=False,
        mentions_bot=True,
        mentions_someone_else=False,
    )


def test_by_default_every_channel_sees_the_field_teams_audiences_only() -> None:
    policy = AudiencePolicy.from_settings(Settings(_env_file=None))

    assert policy.everywhere == {"all", "dispatch", "service"}


def test_settings_map_channels_groups_and_users_to_audiences() -> None:
    settings = Settings(
        _env_file=None,
        audience_default="dispatch, service",
        audience_channels="C0MGMT=management+dispatch, C0HR=hr",
        audience_user_groups='{"S0HR": ["hr"], "S0FIN": "finance+management"}',
        audience_users="U0CEO=management",
    )
    policy = AudiencePolicy.from_settings(settings)

    assert policy.everywhere == {"all", "dispatch", "service"}
    assert policy.channels == {"C0MGMT": {"management", "dispatch"}, "C0HR": {"hr"}}
    assert policy.user_groups == {"S0HR": {"hr"}, "S0FIN": {"finance", "management"}}
    assert policy.users == {"U0CEO": {"management"}}
    # Unmapped places see what every place sees, and nothing else.
    assert policy.channel_audiences("C0RANDOM") == {"all", "dispatch", "service"}


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("audience_channels", "#hr=hr", "not a channel id"),
        ("audience_channels", "D0ALICE=hr", "not a channel id"),
        ("audience_user_groups", "hr-team=hr", "not a user group id"),
        ("audience_users", "C0HR=hr", "not a user id"),
        ("audience_channels", "C0HR", "expected ID=AUDIENCE"),
        ("audience_channels", "C0HR=", "has no audiences"),
    ],
)
def test_a_name_where_an_id_belongs_is_refused(name: str, value: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Settings(_env_file=None, **{name: value})


def test_a_channel_sees_its_own_audiences_and_a_dm_the_askers() -> None:
    policy = AudiencePolicy.from_settings(
        Settings(
            _env_file=None,
            audience_default=[],
            audience_channels={HR_CHANNEL: ["hr"]},
            audience_user_groups={HR_GROUP: ["hr"], "S0FIN": ["finance"]},
            audience_users={"U0CEO": ["management"]},
        )
    )
    slack = _GroupsAPI({HR_GROUP: [HR_LEAD]})
    client: WebClient = slack  # type: ignore[assignment]

    # In a channel everyone reads the answer: the asker's own grants do not count.
    assert policy.audiences_for(question("C0DISPATCH", HR_LEAD), client) == {"all"}
    assert policy.audiences_for(question(HR_CHANNEL, "U0ALICE"), client) == {"all", "hr"}
    assert slack.calls == 0  # channels need no lookup
    assert policy.audiences_for(question("D0HRLEAD", HR_LEAD), client) == {"all", "hr"}
    assert policy.audiences_for(question("D0ALICE", "U0ALICE"), client) == {"all"}
    assert policy.audiences_for(question("D0CEO", "U0CEO"), client) == {"all", "management"}


def test_group_membership_is_cached_and_a_failed_lookup_grants_nothing() -> None:
    now = [1000.0]
    policy = AudiencePolicy.from_settings(
        Settings(_env_file=None, audience_default=[], audience_user_groups={HR_GROUP: ["hr"]})
    )
    policy.membership.clock = lambda: now[0]
    slack = _GroupsAPI(None)  # Slack cannot be reached
    client: WebClient = slack  # type: ignore[assignment]

    assert policy.user_audiences(HR_LEAD, client) == {"all"}
    slack.members = {HR_GROUP: [HR_LEAD]}
    assert policy.user_audiences(HR_LEAD, client) == {"all"}  # not asked again at once
    now[0] += FAILED_LOOKUP_RETRY_S
    assert policy.user_audiences(HR_LEAD, client) == {"all", "hr"}
    assert policy.user_audiences(HR_LEAD, client) == {"all", "hr"}
    assert slack.calls == 2
    slack.members = {HR_GROUP: []}  # removed from the group
    now[0] += MEMBERSHIP_TTL_S
    assert policy.user_audiences(HR_LEAD, client) == {"all"}
    assert slack.calls == 3


# --- end to end in Slack -----------------------------------------------------------------


def test_a_channel_never_cites_a_policy_it_may_not_read_whoever_asks(
    start_bot: StartBot,
) -> None:
    bot = start(start_bot, audience_users={HR_LEAD: ["hr"]})

    # Exactly the restricted policy's content, asked in a channel without its audience by
    # someone who may read it in a DM.
    _, elsewhere = ask(bot, mention(HR_QUESTION, channel="C0DISPATCH", user=HR_LEAD))
    assert_nothing_restricted(bot, elsewhere)

    final, in_hr = ask(bot, mention(HR_QUESTION, channel=HR_CHANNEL))
    assert cites(final, "Driver Discipline Points")  # the channel that may read it does
    assert "HR-417" in prompt_text(in_hr)


def test_a_direct_message_sees_the_askers_groups_and_a_failed_lookup_grants_nothing(
    start_bot: StartBot,
) -> None:
    bot = start(start_bot, audience_user_groups={HR_GROUP: ["hr"]})
    bot.slack.responses["usergroups.users.list"] = {"ok": False, "error": "missing_scope"}

    _, refused = ask(bot, message(HR_QUESTION, channel="D0HRLEAD", user=HR_LEAD))
    _, outsider = ask(bot, message(HR_QUESTION, channel="D0ALICE", user="U0ALICE"))
    assert_nothing_restricted(bot, refused, outsider)

    # Slack answers again (after the retry pause, here at once on a fresh bot).
    bot = start(start_bot, audience_user_groups={HR_GROUP: ["hr"]})
    bot.slack.responses["usergroups.users.list"] = lambda args: {
        "ok": True,
        "users": [HR_LEAD] if args.get("usergroup") == HR_GROUP else [],
    }
    final, member = ask(bot, message(HR_QUESTION, channel="D0HRLEAD", user=HR_LEAD))
    assert cites(final, "Driver Discipline Points")
    assert "HR-417" in prompt_text(member)
    assert [call.args["usergroup"] for call in bot.slack.calls_to("usergroups.users.list")][
        -1
    ] == HR_GROUP


def test_a_thread_forgets_an_answer_its_channel_may_no_longer_read(
    start_bot: StartBot,
) -> None:
    first = mention(HR_QUESTION, channel=HR_CHANNEL)
    hr_bot = start(start_bot)
    _, earlier = ask(hr_bot, first)
    assert "HR-417" in prompt_text(earlier)
    hr_bot.stop()

    # The channel loses the audience; the bot restarts on the same store.
    bot = start(start_bot, audience_channels={})
    before = len(bot.slack.calls)
    follow_up = message(
        "and what is the speed limit in the yard for trucks?",
        channel=HR_CHANNEL,
        thread_ts=first["ts"],
    )
    _, later = ask(bot, follow_up)

    assert later.prompt, "the follow-up reached the model"
    turns = json.loads(later.prompt)
    # The person's question stays in the history; the answer that drew on HR policy does not.
    assert [turn["role"] for turn in turns] == ["system", "user", "user"]
    assert HR_QUESTION in turns[1]["content"]
    assert_nothing_restricted(bot, later, since=before)


def test_the_on_call_card_hides_what_its_channel_may_not_read(start_bot: StartBot) -> None:
    bot = start(start_bot, escalation_channel=ONCALL)
    sensitive = "a driver had a preventable accident, how many points go on his discipline record?"

    final, answer = ask(bot, mention(sensitive, channel=HR_CHANNEL))
    card = bot.slack.wait_for("chat.postMessage", lambda c: c.args["channel"] == ONCALL)[0]

    assert cites(final, "Driver Discipline Points")  # the HR thread reads it
    assert "hr" in (answer.source_audiences or [])  # recorded with the answer
    shown = f"{card.args['text']}\n{block_text(card)}"
    assert "Driver Discipline Points" not in shown
    draft = next(block["text"]["text"] for block in card.args["blocks"] if "Draft" in str(block))
    assert draft.split("\n", 1)[1] == to_mrkdwn(DRAFT_HIDDEN)


def test_an_audience_granted_nowhere_is_seen_nowhere(start_bot: StartBot) -> None:
    bot = start(
        start_bot,
        audience_default=["dispatch"],
        audience_user_groups={HR_GROUP: ["hr"]},
        audience_users={HR_LEAD: ["management"]},
    )
    bot.slack.responses["usergroups.users.list"] = {"ok": True, "users": [HR_LEAD]}

    answers = [
        ask(bot, mention(BUDGET_QUESTION, channel="C0DISPATCH"))[1],
        ask(bot, mention(BUDGET_QUESTION, channel=HR_CHANNEL))[1],
        ask(bot, message(BUDGET_QUESTION, channel="D0HRLEAD", user=HR_LEAD))[1],
    ]

    bot.wait_idle()  # anything still on its way to Slack
    shown = shown_in_slack(bot)
    assert "Year-End Budget Freeze" not in shown
    assert "FIN-88" not in shown
    assert not any("FIN-88" in prompt_text(answer) for answer in answers)
