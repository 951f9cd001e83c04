"""Answers, streaming, errors and the feedback modal as Slack accepts and users read them."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import pytest
from block_checks import assert_valid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.blocks import (
    ASK_PERSON,
    EMPTY_CELL,
    FEEDBACK,
    FEEDBACK_REASON_VIEW,
    QUOTE_BLOCK_ID,
    REASON_CHOICES,
    FeedbackReason,
    QuoteRef,
    SlackMessage,
    SourceRef,
    answer_messages,
    error_message,
    feedback_ack_text,
    feedback_reason_modal,
    parse_feedback_reason,
    parse_feedback_value,
    placeholder_message,
    reason_ack_text,
    streaming_message,
)
from bot.mrkdwn import escape, to_mrkdwn

APPROVALS = SourceRef(
    doc_id="load-approval-thresholds",
    title="Load Approval Thresholds",
    section="Load Approval Thresholds > Approval by weight > Over 26,000 lb",
    version=3,
    effective_from=date(2026, 3, 1),
    url="https://wiki.example.com/policies/load?v=3&lang=en",
)
SLAS = SourceRef(
    doc_id="service-slas-escalation",
    title="Service SLAs & <Escalation>",
    section="Service SLAs & <Escalation>",
    version=2,
    effective_from=date(2025, 12, 9),
)


def answer_sections(messages: list[SlackMessage]) -> list[str]:
    """The answer's section texts, in order: everything before a message's divider.

    A table block counts as its cells, escaped as the monospace text of a table is."""
    texts = []
    for message in messages:
        for block in message.blocks:
            if block["type"] == "divider":
                break
            if block["type"] == "table":
                texts += [
                    escape(" | ".join("" if c["text"] == EMPTY_CELL else c["text"] for c in row))
                    for row in block["rows"]
                ]
            else:
                texts.append(block["text"]["text"])
    return texts


def without_whitespace(text: str) -> str:
    return re.sub(r"\s+", "", text)


def without_fences(texts: list[str]) -> str:
    return without_whitespace("".join(texts)).replace("```", "")


def without_table_marks(texts: list[str]) -> str:
    """The text with no fences, and none of the marks a table is drawn with in monospace."""
    return re.sub(r"[|+-]", "", without_fences(texts))


def submitted(view: dict[str, Any], reasons: list[str], note: str | None) -> dict[str, Any]:
    """The `view` of a view_submission payload as Slack sends it back for this modal."""
    reasons_block, note_block = view["blocks"]
    options = {option["value"]: option for option in reasons_block["element"]["options"]}
    return {
        **view,
        "id": "V123",
        "state": {
            "values": {
                reasons_block["block_id"]: {
                    reasons_block["element"]["action_id"]: {
                        "type": "checkboxes",
                        "selected_options": [options[key] for key in reasons],
                    }
                },
                note_block["block_id"]: {
                    note_block["element"]["action_id"]: {"type": "plain_text_input", "value": note}
                },
            }
        },
    }


def test_placeholder_is_a_valid_looking_it_up_sign() -> None:
    message = placeholder_message()

    assert_valid(message)
    assert "Looking that up" in message.text


def test_streaming_shows_converted_text_with_a_cursor() -> None:
    message = streaming_message("Call **the shift lead** <!channel>")

    assert_valid(message)
    assert message.blocks[0]["text"]["text"] == "Call *the shift lead* &lt;!channel&gt; ▍"
    assert message.text == "Call the shift lead &lt;!channel&gt;"


def test_streaming_a_very_long_answer_stays_one_valid_message_showing_its_start() -> None:
    markdown = "\n\n".join(f"Paragraph {n}: " + "check the seal " * 30 for n in range(200))

    message = streaming_message(markdown)

    assert_valid(message)
    assert message.blocks[0]["text"]["text"].startswith("Paragraph 0:")
    assert message.blocks[-1]["type"] == "context"
    assert "▍" in message.blocks[-1]["elements"][0]["text"]


def test_a_short_answer_is_one_message_with_sources_and_buttons() -> None:
    [message] = answer_messages(
        "**Call** the shift lead [1]. The SLA is 10 minutes [2].",
        [
            APPROVALS,
            SLAS,
        ],
        42,
    )

    assert_valid(message)
    assert [block["type"] for block in message.blocks] == [
        "section",
        "divider",
        "section",
        "context_actions",
        "actions",
    ]
    assert message.blocks[0]["text"]["text"] == (
        "*Call* the shift lead [1]. The SLA is 10 minutes [2]."
    )
    assert message.blocks[2]["text"]["text"] == (
        "*Sources*\n"
        "1. *<https://wiki.example.com/policies/load?v=3&amp;lang=en|Load Approval Thresholds>*"
        " › Approval by weight › Over 26,000 lb · v3 · effective since 1 Mar 2026\n"
        "2. *Service SLAs &amp; &lt;Escalation&gt;* · v2 · effective since 9 Dec 2025"
    )
    assert message.text == "Call the shift lead [1]. The SLA is 10 minutes [2]."


def test_the_answer_id_travels_in_the_block_id_and_every_button() -> None:
    [message] = answer_messages("Yes.", [APPROVALS], 1234)

    feedback_block, actions = message.blocks[-2:]
    # Slack's own 👍/👎, each carrying its vote and the answer.
    assert feedback_block["type"] == "context_actions"
    [feedback] = feedback_block["elements"]
    assert (feedback["type"], feedback["action_id"]) == ("feedback_buttons", FEEDBACK)
    assert feedback["positive_button"]["value"] == "up:1234"
    assert feedback["negative_button"]["value"] == "down:1234"
    assert parse_feedback_value(feedback["negative_button"]["value"]) == (-1, 1234)
    # Handing the thread to people stays an ordinary button.
    assert actions["block_id"] == "answer:1234"
    [ask] = actions["elements"]
    assert (ask["action_id"], ask["value"], ask["text"]["text"]) == (
        ASK_PERSON,
        "1234",
        "Ask a person",
    )


def test_without_sources_there_is_no_sources_part_but_still_the_buttons() -> None:
    [message] = answer_messages("I do not have that in the policies.", [], 7)

    assert_valid(message)
    assert [block["type"] for block in message.blocks] == [
        "section",
        "divider",
        "context_actions",
        "actions",
    ]
    assert "Sources" not in json.dumps(message.blocks)


def test_model_text_cannot_ping_in_the_blocks_or_the_notification_text() -> None:
    [message] = answer_messages("<!channel> <@U1> read this", [], 7)

    assert "<!channel>" not in message.blocks[0]["text"]["text"]
    assert "<@U1>" not in message.blocks[0]["text"]["text"]
    assert "<" not in message.text


@pytest.mark.parametrize(
    "markdown",
    [
        pytest.param(
            "\n\n".join(
                f"**Step {n}.** Check the [reefer log](https://wiki.example.com/r?n={n}&x=1) "
                + "and confirm the seal number with the driver before release [1]. " * 8
                for n in range(55)
            ),
            id="30,000 characters",
        ),
        pytest.param(
            "\n\n".join(
                f"- Point {n}: the dispatcher confirms the slot by phone, then logs it [2]."
                for n in range(200)
            ),
            id="200 short paragraphs",
        ),
        pytest.param(
            " ".join(f"word{n} <x> & _it_" for n in range(1500)),
            id="one 24,000-character line",
        ),
    ],
)
def test_long_answers_split_into_valid_messages_that_lose_no_text(markdown: str) -> None:
    assert len(markdown) > 11_000

    messages = answer_messages(markdown, [APPROVALS, SLAS], 99)

    assert len(messages) > 1
    for message in messages:
        assert_valid(message)
    assert without_whitespace("".join(answer_sections(messages))) == without_whitespace(
        to_mrkdwn(markdown)
    )
    for message in messages[:-1]:
        assert [block["type"] for block in message.blocks] == ["section"] * len(message.blocks)
    assert messages[-1].blocks[-1]["block_id"] == "answer:99"
    assert messages[-1].blocks[-3]["text"]["text"].startswith("*Sources*")
    assert messages[0].text.startswith(answer_sections(messages)[0][:20].replace("*", ""))


def test_a_word_longer_than_a_section_is_cut_without_breaking_an_entity() -> None:
    markdown = "a&b<c" * 2_000

    sections = answer_sections(answer_messages(markdown, [], 1))

    assert len(sections) > 3
    assert "".join(sections) == to_mrkdwn(markdown)
    for section in sections:
        assert "&" not in re.sub(r"&(?:amp|lt|gt);", "", section)


def test_a_code_block_that_fits_a_section_is_never_split() -> None:
    code = "```\n" + "\n".join(f"step {n}: " + "x" * 40 for n in range(40)) + "\n```"
    markdown = "Intro " * 400 + "\n\n" + code + "\n\nOutro."

    sections = answer_sections(answer_messages(markdown, [], 1))

    assert any(code in section for section in sections)


def test_a_code_block_too_long_for_a_section_is_closed_and_reopened() -> None:
    lines = [f"step {n}: " + "x" * 60 for n in range(150)]
    markdown = "```\n" + "\n".join(lines) + "\n```"

    sections = answer_sections(answer_messages(markdown, [], 1))

    assert len(sections) > 2
    code_lines = []
    for section in sections:
        assert section.startswith("```\n")
        assert section.endswith("\n```")
        code_lines += section.split("\n")[1:-1]
    assert code_lines == lines


def test_error_keeps_the_partial_answer_and_gives_the_reference() -> None:
    message = error_message("req-7f3a", "The shift lead approves **loads** over")

    assert_valid(message)
    assert message.blocks[0]["text"]["text"] == "The shift lead approves *loads* over"
    apology = message.blocks[-1]["text"]["text"]
    assert "`req-7f3a`" in apology
    assert "saved" in apology
    assert "try again in a minute" in apology
    assert "dispatcher" in apology
    assert "req-7f3a" in message.text


def test_error_without_partial_text_is_only_the_apology() -> None:
    message = error_message("req-1")

    assert_valid(message)
    assert [block["type"] for block in message.blocks] == ["section"]


def test_error_keeps_everything_a_long_stream_showed() -> None:
    markdown = "\n\n".join(f"Paragraph {n}: " + "check the seal " * 30 for n in range(200))
    streamed = [
        block["text"]["text"].removesuffix(" ▍")
        for block in streaming_message(markdown).blocks
        if block["type"] == "section"
    ]

    message = error_message("req-2", markdown)

    assert_valid(message)
    shown = [block["text"]["text"] for block in message.blocks if block["type"] == "section"]
    assert shown[: len(streamed)] == streamed


def test_a_hostile_reference_cannot_break_the_code_span_or_ping() -> None:
    message = error_message("abc`<!channel>`")

    apology = message.blocks[-1]["text"]["text"]
    assert "`abc&lt;!channel&gt;`" in apology
    assert "<!channel>" not in message.text


def test_the_feedback_modal_is_a_valid_view_with_the_reasons() -> None:
    view = feedback_reason_modal(42, "C123", "1712345678.000100")

    View(**view).validate_json()
    for block in view["blocks"]:
        Block.parse(block).validate_json()
    assert view["callback_id"] == FEEDBACK_REASON_VIEW
    assert view["title"]["text"] == "What was wrong?"
    assert view["submit"]["text"] == "Send"
    assert view["close"]["text"] == "Skip"
    assert json.loads(view["private_metadata"]) == {
        "answer_id": 42,
        "channel_id": "C123",
        "thread_ts": "1712345678.000100",
    }
    assert " " not in view["private_metadata"]
    checkboxes, note = (block["element"] for block in view["blocks"])
    assert [option["value"] for option in checkboxes["options"]] == list(REASON_CHOICES)
    assert [option["text"]["text"] for option in checkboxes["options"]] == list(
        REASON_CHOICES.values()
    )
    assert note["multiline"] is True
    assert note["max_length"] == 2_000
    assert all(block["optional"] for block in view["blocks"])


def test_the_modal_round_trips_with_reasons_and_a_note() -> None:
    view = feedback_reason_modal(42, "C123", "1712345678.000100")

    reason = parse_feedback_reason(submitted(view, ["unclear", "wrong"], "  Ext. is 4412 now \n"))

    assert reason == FeedbackReason(
        answer_id=42,
        channel_id="C123",
        thread_ts="1712345678.000100",
        reasons=("wrong", "unclear"),
        note="Ext. is 4412 now",
    )


@pytest.mark.parametrize("note", [None, "", "   \n"])
def test_the_modal_round_trips_with_nothing_chosen(note: str | None) -> None:
    view = feedback_reason_modal(5, "C9", "1.2")

    reason = parse_feedback_reason(submitted(view, [], note))

    assert reason == FeedbackReason(5, "C9", "1.2", reasons=(), note=None)


def _malformed(change: str) -> dict[str, Any]:
    view = submitted(feedback_reason_modal(42, "C123", "1.2"), ["wrong"], "note")
    values = view["state"]["values"]
    if change == "callback_id":
        view["callback_id"] = "something_else"
    elif change == "no metadata":
        del view["private_metadata"]
    elif change == "metadata not json":
        view["private_metadata"] = "answer 42"
    elif change == "answer_id not a number":
        view["private_metadata"] = json.dumps(
            {"answer_id": "42", "channel_id": "C", "thread_ts": "1"}
        )
    elif change == "no channel":
        view["private_metadata"] = json.dumps({"answer_id": 42, "thread_ts": "1"})
    elif change == "no state":
        del view["state"]
    elif change == "unknown reason":
        next(iter(values["feedback_reasons"].values()))["selected_options"] = [{"value": "rude"}]
    elif change == "note not text":
        next(iter(values["feedback_note"].values()))["value"] = 3
    return view


@pytest.mark.parametrize(
    "change",
    [
        "callback_id",
        "no metadata",
        "metadata not json",
        "answer_id not a number",
        "no channel",
        "no state",
        "unknown reason",
        "note not text",
    ],
)
def test_a_malformed_view_raises_a_clear_value_error(change: str) -> None:
    view = _malformed(change)

    with pytest.raises(ValueError, match=r"\w"):
        parse_feedback_reason(view)


def test_feedback_thanks_differ_for_up_and_down_and_reject_other_values() -> None:
    up, down = feedback_ack_text(1), feedback_ack_text(-1)

    assert "Thanks" in up
    assert "Thanks" in down
    assert up != down
    with pytest.raises(ValueError, match="1"):
        feedback_ack_text(0)


def test_reason_thanks_names_the_reasons_and_never_echoes_the_note() -> None:
    reason = FeedbackReason(1, "C1", "1.2", ("wrong", "out_of_date"), "<!channel> fix it")

    text = reason_ack_text(reason)

    assert "wrong, out of date" in text
    assert "<!channel>" not in text
    assert reason_ack_text(FeedbackReason(1, "C1", "1.2", (), None)) == "Thanks for the feedback."


markdownish_text = st.one_of(
    st.text(),
    st.lists(
        st.sampled_from(
            [
                "**",
                "_",
                "`",
                "```\n",
                "[1]",
                "[x](https://e.com/a|b)",
                "<!channel>",
                "&",
                "| a | b |\n|---|---|\n",
                "- ",
                "\n",
                "\n\n",
                " ",
                "word ",
                "👍",
                "x" * 500,
                "y " * 400,
            ]
        ),
        max_size=80,
    ).map("".join),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    markdown=markdownish_text,
    answer_id=st.integers(min_value=1, max_value=2**63 - 1),
    with_sources=st.booleans(),
)
def test_any_text_gives_valid_messages(markdown: str, answer_id: int, with_sources: bool) -> None:
    sources = [APPROVALS, SLAS] if with_sources else []

    messages = answer_messages(markdown, sources, answer_id)
    for message in messages:
        assert_valid(message)
    assert messages[-1].blocks[-1]["block_id"] == f"answer:{answer_id}"
    # A code block split over sections gains a closing and an opening fence at the cut.
    # A table may show as a table block: its cells, without the lines drawn around them.
    assert without_table_marks(answer_sections(messages)) == without_table_marks(
        [to_mrkdwn(markdown)]
    )
    assert_valid(streaming_message(markdown))
    assert_valid(error_message("req-1", markdown))


QUOTED_ROW = QuoteRef(
    markdown=(
        "| Cargo weight | Who approves |\n|---|---|\n| 26,001 to 40,000 lb | Shift lead on duty |"
    ),
    is_table=True,
    source=APPROVALS,
)
QUOTED_STEPS = QuoteRef(
    markdown="- Pull over within 15 minutes.\n- Call the Reefer Desk at ext. 4350 & <wait>.",
    is_table=False,
    source=SLAS,
)


def test_the_policy_words_follow_the_answer_cited_like_a_source() -> None:
    (message,) = answer_messages("The shift lead approves it.", [APPROVALS], 7, QUOTED_ROW)

    assert_valid(message)
    kinds = [block["type"] for block in message.blocks]
    assert kinds[:3] == ["section", "table", "context"]  # answer, quote, where it is from
    assert message.blocks[1]["block_id"] == QUOTE_BLOCK_ID
    rows = [[cell["text"] for cell in row] for row in message.blocks[1]["rows"]]
    assert rows == [["Cargo weight", "Who approves"], ["26,001 to 40,000 lb", "Shift lead on duty"]]
    cited = message.blocks[2]["elements"][0]["text"]
    assert cited.startswith("From *<https://wiki.example.com/policies/load?v=3&amp;lang=en|")
    assert "v3 · effective since 1 Mar 2026" in cited
    assert "Shift lead on duty" in message.text  # notifications carry the policy too


def test_prose_and_lists_are_quoted_and_escaped() -> None:
    (message,) = answer_messages("Here is what the policy says:", [SLAS], 8, QUOTED_STEPS)

    assert_valid(message)
    quote = message.blocks[1]["text"]["text"]
    assert quote.splitlines()[0].startswith("> ")
    assert all(line.startswith("> ") for line in quote.splitlines())
    assert "&amp; &lt;wait&gt;" in quote


def test_a_quote_under_a_refusal_is_only_the_closest_policy() -> None:
    closest = QuoteRef(QUOTED_STEPS.markdown, False, SLAS, closest_only=True)
    (message,) = answer_messages("The policy doesn't say.", [SLAS], 9, closest)

    assert message.blocks[2]["elements"][0]["text"].startswith("The closest policy I found:")


def test_a_long_quote_splits_across_messages_and_the_buttons_stay_last() -> None:
    rows = "\n".join(
        f"| Item {n} with a long description of what it is | ${n} |" for n in range(400)
    )
    huge = QuoteRef(f"| Item | Limit |\n|---|---|\n{rows}", True, APPROVALS)

    messages = answer_messages("The limits:", [APPROVALS], 10, huge)

    assert len(messages) > 1
    for message in messages:
        assert_valid(message)
    assert message.blocks[-1]["type"] == "actions"
