"""The on-call card, its modal and the thread replies around a hand-off, as Slack accepts them."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date
from typing import Any

import pytest
from block_checks import assert_valid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.views import View

from bot.blocks import SlackMessage, SourceRef
from bot.escalation_blocks import (
    ESCALATION_CLAIM,
    ESCALATION_RESOLVE,
    RESOLVE_VIEW,
    TRIGGER_LABELS,
    EscalationCard,
    Resolution,
    VerifiedChoice,
    VerifiedDraft,
    claimed_notice,
    escalation_card,
    escalation_notice,
    moved_card_notice,
    parse_resolution,
    resolution_post,
    resolve_modal,
)
from bot.mrkdwn import to_mrkdwn

HUGE = " ".join(f"word{n} <!channel> & more" for n in range(1_400))  # about 30,000 characters

APPROVALS = SourceRef(
    doc_id="load-approval-thresholds",
    title="Load Approval Thresholds",
    section="Load Approval Thresholds > Approval by weight > Over 26,000 lb",
    version=3,
    effective_from=date(2026, 3, 1),
    url="https://wiki.example.com/policies/load?v=3&lang=en",
)
SLAS = SourceRef(
    doc_id="service-slas",
    title="Service SLAs",
    section="Service SLAs",
    version=2,
    effective_from=date(2025, 12, 9),
)
# As many sources as blocks.py will list, each with a long address: the most they can take.
MANY_SOURCES = tuple(
    SourceRef(
        doc_id="t",
        title="T" * 200,
        section="T" * 200 + " > " + "S" * 200,
        version=n,
        effective_from=date(2026, 1, 1),
        url="https://wiki.example.com/" + "p" * 400,
    )
    for n in range(100)
)

CARD = EscalationCard(
    escalation_id=42,
    question="Can I release a reefer load over 26,000 lb without the shift lead?",
    asker_id="U1ASKER",
    trigger="weak_evidence",
    priority="normal",
    thread_link="https://acme.slack.com/archives/C1DISP/p1712345678000100",
    channel_id="C1DISP",
    mention="<!subteam^S0ONCALL>",
)


def shown(message: SlackMessage) -> str:
    """All the mrkdwn the message displays, in order."""
    texts = []
    for block in message.blocks:
        if block["type"] == "section":
            texts.append(block["text"]["text"])
        elif block["type"] == "context":
            texts += [element["text"] for element in block["elements"]]
    return "\n".join(texts)


def actions(message: SlackMessage) -> list[dict[str, Any]]:
    return [block for block in message.blocks if block["type"] == "actions"]


def card(**changes: Any) -> EscalationCard:
    return dataclasses.replace(CARD, **changes)


def submitted(view: dict[str, Any], answer: str | None) -> dict[str, Any]:
    """The `view` of a view_submission payload as Slack sends it back for this modal."""
    [block] = view["blocks"]
    return {
        **view,
        "id": "V123",
        "state": {
            "values": {
                block["block_id"]: {
                    block["element"]["action_id"]: {"type": "plain_text_input", "value": answer}
                }
            }
        },
    }


def without_whitespace(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("status", ["open", "claimed", "resolved"])
@pytest.mark.parametrize("draft", [None, "**Yes**, with the shift lead's approval [1]."])
@pytest.mark.parametrize("sources", [(), (APPROVALS, SLAS)])
@pytest.mark.parametrize("thread_link", [None, CARD.thread_link])
def test_every_state_gives_a_valid_card_showing_who_asked_where_and_what(
    status: str, draft: str | None, sources: tuple[SourceRef, ...], thread_link: str | None
) -> None:
    message = escalation_card(
        card(
            status=status,
            draft=draft,
            sources=sources,
            thread_link=thread_link,
            assignee=None if status == "open" else "U9DISP",
            resolution="Yes, call the shift lead first." if status == "resolved" else None,
        )
    )

    assert_valid(message)
    text = shown(message)
    assert "No policy covers it" in text
    assert "<@U1ASKER>" in text
    assert "<#C1DISP>" in text
    assert "> Can I release a reefer load over 26,000 lb without the shift lead?" in text
    assert (
        "<https://acme.slack.com/archives/C1DISP/p1712345678000100|Open the thread>" in text
    ) is (thread_link is not None)
    assert ("*Yes*, with the shift lead's approval [1]." in text) is (draft is not None)
    assert ("*Sources*" in text) is bool(sources)
    assert "a person is needed" in message.text
    assert "Can I release a reefer load" in message.text


def test_high_priority_is_marked_in_the_card_and_the_notification() -> None:
    high = escalation_card(card(priority="high", trigger="sensitive"))
    normal = escalation_card(card(priority="normal"))

    assert high.blocks[0]["text"]["text"].startswith(":red_circle: *High priority*")
    assert "Sensitive topic" in high.blocks[0]["text"]["text"]
    assert high.text.startswith("High priority: a person is needed")
    assert "High priority" not in shown(normal)
    assert "High priority" not in normal.text
    assert "red_circle" not in shown(normal)


def test_every_trigger_shows_its_label_and_an_unknown_one_shows_its_key_escaped() -> None:
    for trigger, label in TRIGGER_LABELS.items():
        assert label in escalation_card(card(trigger=trigger)).blocks[0]["text"]["text"]

    headline = escalation_card(card(trigger="new_<rule>")).blocks[0]["text"]["text"]

    assert "new_&lt;rule&gt;" in headline


@pytest.mark.parametrize("status", ["claimed", "resolved"])
def test_the_mention_pings_only_while_the_card_is_open(status: str) -> None:
    assert "<!subteam^S0ONCALL>" in shown(escalation_card(card()))

    for reminder in (0, 1, 2):
        later = escalation_card(card(status=status, assignee="U9DISP", reminder=reminder))
        assert "<!subteam^S0ONCALL>" not in shown(later)
        assert "<!here>" not in shown(later)


def test_reminders_get_louder_and_the_last_one_says_so() -> None:
    first = shown(escalation_card(card(reminder=0)))
    second = shown(escalation_card(card(reminder=1)))
    last = shown(escalation_card(card(reminder=2, mention="<!subteam^S0LEADS>")))

    assert "<!here>" not in first
    assert "<!here>" in second
    assert "<!subteam^S0ONCALL>" in second
    assert "Reminder 1" in second
    assert "still unclaimed" in second
    assert "Last reminder" not in second
    assert "<!here>" in last
    assert "<!subteam^S0LEADS>" in last
    assert "Last reminder" in last
    assert escalation_card(card(reminder=1)).text.startswith("Reminder 1: ")


def test_an_empty_mention_pings_no_one_on_the_first_post_but_reminders_still_use_here() -> None:
    first = escalation_card(card(mention=""))
    reminder = escalation_card(card(mention="", reminder=1))

    assert_valid(first)
    assert "<!" not in shown(first)
    assert_valid(reminder)
    assert ":bell: <!here> *Reminder 1:*" in shown(reminder)


def test_an_open_card_offers_claim_and_resolve_with_the_escalation_id() -> None:
    [block] = actions(escalation_card(card(escalation_id=1234)))

    assert block["block_id"] == "escalation:1234"
    assert [button["action_id"] for button in block["elements"]] == [
        ESCALATION_CLAIM,
        ESCALATION_RESOLVE,
    ]
    assert [button["value"] for button in block["elements"]] == ["1234", "1234"]
    assert [button["text"]["text"] for button in block["elements"]] == ["Claim", "Resolve"]
    assert block["elements"][0]["style"] == "primary"


def test_a_claimed_card_names_the_assignee_and_keeps_only_resolve() -> None:
    message = escalation_card(card(escalation_id=77, status="claimed", assignee="U9DISP"))

    assert_valid(message)
    assert "Claimed by <@U9DISP>" in shown(message)
    [block] = actions(message)
    assert block["block_id"] == "escalation:77"
    assert [(b["action_id"], b["value"]) for b in block["elements"]] == [(ESCALATION_RESOLVE, "77")]
    assert "claimed" in message.text


def test_a_resolved_card_shows_the_answer_and_has_no_buttons() -> None:
    message = escalation_card(
        card(status="resolved", assignee="U9DISP", resolution="Yes, **call** the shift lead.")
    )

    assert_valid(message)
    assert actions(message) == []
    assert "Resolved by <@U9DISP>" in shown(message)
    assert "Yes, *call* the shift lead." in shown(message)
    assert "resolved" in message.text


def test_text_from_users_and_the_model_cannot_ping() -> None:
    message = escalation_card(
        card(
            question="<!channel> ask <@U1> & <!here>",
            draft="<!channel> **ping** <@U2>",
            status="resolved",
            assignee="U9DISP",
            resolution="<!everyone> done <@U3>",
        )
    )

    text = shown(message)
    for raw in ("<!channel>", "<!here>", "<!everyone>", "<@U1>", "<@U2>", "<@U3>"):
        assert raw not in text
        assert raw not in message.text
    assert "&lt;!channel&gt; ask &lt;@U1&gt; &amp; &lt;!here&gt;" in text
    assert "&lt;!channel&gt; *ping* &lt;@U2&gt;" in text


@pytest.mark.parametrize("status", ["open", "claimed", "resolved"])
def test_huge_question_draft_resolution_and_sources_still_make_one_valid_card(
    status: str,
) -> None:
    assert len(HUGE) > 30_000

    message = escalation_card(
        card(
            question=HUGE,
            draft=HUGE,
            sources=MANY_SOURCES,
            status=status,
            assignee=None if status == "open" else "U9DISP",
            resolution=HUGE,
            reminder=2,
            mention=" ".join(f"<@U{n:010d}>" for n in range(1_000)),
        )
    )

    assert_valid(message)
    question = next(b["text"]["text"] for b in message.blocks if "*Question*" in str(b))
    assert question.startswith("*Question*\n> word0 &lt;!channel&gt; &amp; more word1")
    assert question.endswith("\n…")
    assert "*Draft answer*" in shown(message)
    assert "*Sources*" in shown(message)
    assert (status == "resolved") is ("Resolved by <@U9DISP>" in shown(message))


def test_an_empty_question_still_gives_a_valid_card() -> None:
    message = escalation_card(card(question=" \n ", draft="  "))

    assert_valid(message)
    assert "Draft answer" not in shown(message)
    assert message.text == "Normal priority: a person is needed"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"status": "closed"}, "closed"),
        ({"priority": "urgent"}, "urgent"),
        ({"reminder": -1}, "-1"),
    ],
)
def test_a_card_the_builder_does_not_know_raises_a_clear_value_error(
    change: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        escalation_card(card(**change))


def test_the_moved_card_is_a_short_pointer_without_buttons_or_pings() -> None:
    message = moved_card_notice(card(question="<!channel> " + HUGE, reminder=1))

    assert_valid(message)
    assert actions(message) == []
    assert "re-posted below" in shown(message)
    assert "re-posted below" in message.text
    assert "<!" not in shown(message)
    assert len(shown(message)) < 1_000


def test_the_escalation_notice_puts_the_safety_note_first() -> None:
    note = ":rotating_light: If anyone is hurt or in danger, call 911 first."

    sensitive = escalation_notice("U1ASKER", safety_note=note, priority="high")
    plain = escalation_notice("U1ASKER")

    assert sensitive.startswith(note + "\n\n")
    assert "<@U1ASKER>" in sensitive
    assert "urgent" in sensitive
    assert plain.startswith("<@U1ASKER>")
    assert "911" not in plain
    assert "urgent" not in plain
    assert "thread" in plain
    with pytest.raises(ValueError, match="priority"):
        escalation_notice("U1ASKER", priority="urgent")


def test_the_claimed_notice_names_who_is_on_it() -> None:
    assert claimed_notice("U9DISP").startswith("<@U9DISP> is on it")


def test_a_short_resolution_is_one_message_from_the_person() -> None:
    [message] = resolution_post("U9DISP", "Yes, **call** the shift lead <!channel>.")

    assert_valid(message)
    assert [block["type"] for block in message.blocks] == ["section"]
    assert message.blocks[0]["text"]["text"] == (
        "Answer from <@U9DISP>:\nYes, *call* the shift lead &lt;!channel&gt;."
    )
    assert message.text == "Answer from <@U9DISP>: Yes, call the shift lead &lt;!channel&gt;."


def test_a_long_resolution_splits_into_valid_messages_that_lose_no_text() -> None:
    markdown = "\n\n".join(
        f"**Step {n}.** " + "confirm the seal with the driver. " * 20 for n in range(50)
    )
    assert len(markdown) > 30_000

    messages = resolution_post("U9DISP", markdown)

    assert len(messages) > 1
    for message in messages:
        assert_valid(message)
    assert messages[0].text.startswith("Answer from <@U9DISP>: Step 0.")
    assert without_whitespace("\n".join(shown(m) for m in messages)) == without_whitespace(
        "Answer from <@U9DISP>:" + to_mrkdwn(markdown)
    )


@pytest.mark.parametrize("prefill", [None, "**Yes**, with approval [1].\n\nCall ext. 4412."])
def test_the_resolve_modal_is_a_valid_view_that_round_trips(prefill: str | None) -> None:
    view = resolve_modal(42, prefill)

    View(**view).validate_json()
    assert view["callback_id"] == RESOLVE_VIEW
    assert view["title"]["text"] == "Resolve"
    assert view["submit"]["text"] == "Resolve"
    assert view["close"]["text"] == "Cancel"
    assert view["private_metadata"] == '{"escalation_id":42}'
    [block] = view["blocks"]
    assert block["type"] == "input"
    assert not block.get("optional", False)
    assert block["element"]["multiline"] is True
    assert block["element"]["max_length"] == 3_000
    assert block["element"].get("initial_value") == prefill

    answer = prefill or "Yes, call the shift lead."
    assert parse_resolution(submitted(view, f"  {answer} \n")) == Resolution(42, answer, None)


def test_a_prefill_longer_than_the_input_allows_is_shortened() -> None:
    view = resolve_modal(42, "👍" * 3_000)

    View(**view).validate_json()
    initial = view["blocks"][0]["element"]["initial_value"]
    assert len(initial.encode("utf-16-le")) // 2 <= 3_000
    assert initial.startswith("👍👍")
    assert initial.endswith("…")


def _malformed(change: str) -> dict[str, Any]:
    view = submitted(resolve_modal(42, None), "Yes.")
    [entry] = [next(iter(block.values())) for block in view["state"]["values"].values()]
    if change == "empty answer":
        entry["value"] = "   \n "
    elif change == "no answer":
        entry["value"] = None
    elif change == "answer not text":
        entry["value"] = 3
    elif change == "callback_id":
        view["callback_id"] = "feedback_reason"
    elif change == "no metadata":
        del view["private_metadata"]
    elif change == "metadata not json":
        view["private_metadata"] = "escalation 42"
    elif change == "id not a number":
        view["private_metadata"] = json.dumps({"escalation_id": "42"})
    elif change == "id a boolean":
        view["private_metadata"] = json.dumps({"escalation_id": True})
    elif change == "no state":
        del view["state"]
    elif change == "no input":
        view["state"]["values"] = {}
    return view


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("empty answer", "empty"),
        ("no answer", "empty"),
        ("answer not text", "text"),
        ("callback_id", "not a resolve view"),
        ("no metadata", "private_metadata"),
        ("metadata not json", "not JSON"),
        ("id not a number", "escalation_id"),
        ("id a boolean", "escalation_id"),
        ("no state", "state.values"),
        ("no input", "state.values"),
    ],
)
def test_an_empty_answer_or_malformed_view_raises_a_clear_value_error(
    change: str, message: str
) -> None:
    view = _malformed(change)

    with pytest.raises(ValueError, match=message):
        parse_resolution(view)


def test_parse_resolution_rejects_something_that_is_not_a_view() -> None:
    with pytest.raises(ValueError, match="view_submission"):
        parse_resolution("not a view")  # type: ignore[arg-type]


any_text = st.one_of(
    st.text(),
    st.lists(
        st.sampled_from(
            [
                "**",
                "_",
                "`",
                "```\n",
                "> ",
                "[x](https://e.com/a|b)",
                "<!channel>",
                "<@U1>",
                "&",
                "| a | b |\n|---|---|\n",
                "\n",
                "\n\n",
                " ",
                "word ",
                "👍",
                "x" * 2_000,
                "y " * 1_000,
            ]
        ),
        max_size=60,
    ).map("".join),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    question=any_text,
    draft=st.none() | any_text,
    resolution=st.none() | any_text,
    status=st.sampled_from(["open", "claimed", "resolved"]),
    priority=st.sampled_from(["high", "normal"]),
    reminder=st.integers(min_value=0, max_value=3),
    with_sources=st.booleans(),
    escalation_id=st.integers(min_value=1, max_value=2**63 - 1),
)
def test_any_text_gives_a_valid_card(
    question: str,
    draft: str | None,
    resolution: str | None,
    status: str,
    priority: str,
    reminder: int,
    with_sources: bool,
    escalation_id: int,
) -> None:
    escalation = card(
        escalation_id=escalation_id,
        question=question,
        draft=draft,
        resolution=resolution,
        status=status,
        priority=priority,
        reminder=reminder,
        sources=MANY_SOURCES if with_sources else (),
        assignee=None if status == "open" else "U9DISP",
    )

    message = escalation_card(escalation)

    assert_valid(message)
    buttons = [b for block in actions(message) for b in block["elements"]]
    assert {b["value"] for b in buttons} <= {str(escalation_id)}
    assert len(buttons) == {"open": 2, "claimed": 1, "resolved": 0}[status]
    assert_valid(moved_card_notice(escalation))
    for post in resolution_post("U9DISP", resolution or ""):
        assert_valid(post)
    View(**resolve_modal(escalation_id, draft)).validate_json()


CHOICE = VerifiedChoice(
    question="who approves a 30,000 lb load?",
    audiences=("all", "dispatch", "hr", "service"),
    audience="dispatch",
    save_by_default=True,
)


def submitted_with_verified(
    *, save: bool, question: str | None, answer: str | None, expires: str | None = None
) -> dict[str, Any]:
    """The resolve modal with the verified-answer part, as Slack sends it back."""
    view = resolve_modal(42, "The shift lead.", CHOICE)
    values: dict[str, Any] = {
        "resolution": {"answer": {"type": "plain_text_input", "value": "The shift lead."}},
        "verify": {
            "save": {
                "type": "checkboxes",
                "selected_options": [{"value": "save"}] if save else [],
            }
        },
        "verified_question": {"text": {"type": "plain_text_input", "value": question}},
        "verified_answer": {"text": {"type": "plain_text_input", "value": answer}},
        "verified_audience": {
            "audience": {"type": "static_select", "selected_option": {"value": "hr"}}
        },
        "verified_expiry": {"expires_on": {"type": "datepicker", "selected_date": expires}},
    }
    return {**view, "id": "V9", "state": {"values": values}}


def test_the_resolve_modal_offers_to_save_a_verified_answer_ticked_for_policy_questions() -> None:
    view = resolve_modal(42, None, CHOICE)

    View(**view).validate_json()
    by_id = {block.get("block_id"): block for block in view["blocks"]}
    assert by_id["verify"]["element"]["initial_options"][0]["value"] == "save"
    assert by_id["verified_question"]["element"]["initial_value"] == CHOICE.question
    assert by_id["verified_audience"]["element"]["initial_option"]["value"] == "dispatch"
    sensitive = resolve_modal(42, None, dataclasses.replace(CHOICE, save_by_default=False))
    assert (
        "initial_options"
        not in {b.get("block_id"): b for b in sensitive["blocks"]}["verify"]["element"]
    )


def test_a_ticked_box_gives_the_verified_answer_to_save() -> None:
    ticked = submitted_with_verified(
        save=True, question=" who signs off on 30k? ", answer=None, expires="2027-01-31"
    )
    unticked = submitted_with_verified(save=False, question="x", answer="y")

    assert parse_resolution(ticked).verified == VerifiedDraft(
        question="who signs off on 30k?",
        answer=None,
        audience="hr",
        expires_on=date(2027, 1, 31),
    )
    assert parse_resolution(unticked).verified is None
