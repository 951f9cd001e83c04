"""Markdown tables as Slack `table` blocks, within Slack's limits, and text past them."""

from __future__ import annotations

from datetime import date
from typing import Any

from block_checks import assert_valid
from slack_sdk.models.blocks import Block
from slack_sdk.models.blocks.basic_components import RawTextObject, TableBlockColumnSettings

from bot.blocks import (
    EMPTY_CELL,
    QUOTE_BLOCK_ID,
    TABLE_COLUMN_LIMIT,
    TABLE_ROW_LIMIT,
    TABLE_TEXT_LIMIT,
    QuoteRef,
    SlackMessage,
    SourceRef,
    answer_messages,
    quote_blocks,
    table_block,
)
from bot.mrkdwn import MarkdownTable, split_tables, to_mrkdwn

APPROVALS = SourceRef(
    doc_id="load-approval-thresholds",
    title="Load Approval Thresholds",
    section="Load Approval Thresholds > Approval by weight",
    version=3,
    effective_from=date(2026, 3, 1),
    url="https://intranet.northwind.example/policies/load-approval",
)
LOAD_TABLE = (
    "| Cargo weight | Who approves | Ext. |\n"
    "|:---|:---:|---:|\n"
    "| Up to 26,000 lb | **Dispatcher** on the load | |\n"
    "| 26,001 to 40,000 lb | Shift lead on duty | 4411 |\n"
    "| 40,001 lb and over | [Operations manager](https://intranet.example/ops) | 4420 |"
)
SLA_TABLE = "| Priority | Response |\n|---|---|\n| P1 | 15 min |\n| P2 | 2 h |"


def assert_valid_table(block: dict[str, Any]) -> None:
    """Slack's models accept the block, and it keeps to the table block's documented limits."""
    assert block["type"] == "table"
    Block.parse(block).validate_json()
    rows = block["rows"]
    assert 1 <= len(rows) <= TABLE_ROW_LIMIT
    columns = len(rows[0])
    assert 1 <= columns <= TABLE_COLUMN_LIMIT
    for row in rows:
        assert len(row) == columns
        for cell in row:
            assert cell["type"] == "raw_text"
            RawTextObject(text=cell["text"]).validate_json()
            assert cell["text"].strip()
    assert len(block["column_settings"]) <= TABLE_COLUMN_LIMIT
    for settings in block["column_settings"]:
        TableBlockColumnSettings(**settings)
        assert settings.get("align", "left") in ("left", "center", "right")
    assert sum(len(cell["text"]) for row in rows for cell in row) <= TABLE_TEXT_LIMIT


def cells(block: dict[str, Any]) -> list[list[str]]:
    return [[cell["text"] for cell in row] for row in block["rows"]]


def kinds(message: SlackMessage) -> list[str]:
    return [block["type"] for block in message.blocks]


def wide_table(columns: int) -> str:
    header = "| " + " | ".join(f"c{n}" for n in range(columns)) + " |"
    delimiter = "|" + "---|" * columns
    row = "| " + " | ".join(str(n) for n in range(columns)) + " |"
    return f"{header}\n{delimiter}\n{row}"


def long_table(rows: int) -> str:
    body = "\n".join(f"| Item {n} | ${n} |" for n in range(rows))
    return f"| Item | Limit |\n|---|---|\n{body}"


def test_a_table_that_fits_becomes_a_table_block_of_plain_cells() -> None:
    block = table_block(LOAD_TABLE)

    assert block is not None
    assert_valid_table(block)
    assert cells(block) == [
        ["Cargo weight", "Who approves", "Ext."],
        ["Up to 26,000 lb", "Dispatcher on the load", EMPTY_CELL],
        ["26,001 to 40,000 lb", "Shift lead on duty", "4411"],
        ["40,001 lb and over", "Operations manager", "4420"],
    ]
    # Alignment comes from the delimiter row; long cells wrap rather than being cut.
    assert block["column_settings"] == [
        {"is_wrapped": True},
        {"is_wrapped": True, "align": "center"},
        {"is_wrapped": True, "align": "right"},
    ]


def test_slack_limits_decide_whether_a_table_is_a_block() -> None:
    assert table_block(wide_table(TABLE_COLUMN_LIMIT)) is not None
    assert table_block(wide_table(TABLE_COLUMN_LIMIT + 1)) is None
    fits = table_block(long_table(TABLE_ROW_LIMIT - 1))  # the header is a row too
    assert fits is not None
    assert len(fits["rows"]) == TABLE_ROW_LIMIT
    assert_valid_table(fits)
    assert table_block(long_table(TABLE_ROW_LIMIT)) is None
    wordy = "| Rule |\n|---|\n" + "\n".join(f"| {'x' * 1_000} |" for _ in range(11))
    assert table_block(wordy) is None


def test_only_a_single_table_is_a_table_block() -> None:
    assert table_block("no table here") is None
    assert table_block(f"{LOAD_TABLE}\n\n{SLA_TABLE}") is None
    assert table_block(f"```\n{SLA_TABLE}\n```") is None  # a table in code stays code


def test_an_answer_shows_its_table_as_a_table_block_between_its_text() -> None:
    markdown = f"The approvers by weight:\n\n{LOAD_TABLE}\n\nCall before dispatch."

    (message,) = answer_messages(markdown, [APPROVALS], 5)

    assert_valid(message)
    assert kinds(message)[:3] == ["section", "table", "section"]
    assert_valid_table(message.blocks[1])
    assert message.blocks[0]["text"]["text"] == "The approvers by weight:"
    assert message.blocks[2]["text"]["text"] == "Call before dispatch."
    # Notifications and screen readers still get the table's words, in order.
    assert "The approvers by weight:" in message.text
    assert "26,001 to 40,000 lb | Shift lead on duty | 4411" in message.text
    assert message.text.endswith("Call before dispatch.")


def test_past_the_limits_a_table_stays_monospace_text() -> None:
    (message,) = answer_messages(f"The grid:\n\n{wide_table(21)}", [APPROVALS], 6)

    assert_valid(message)
    assert "table" not in kinds(message)
    text = message.blocks[0]["text"]["text"]
    assert text.startswith("The grid:\n\n```")
    assert "c0  | c1  | c2" in text


def test_a_second_table_in_a_message_stays_text() -> None:
    markdown = f"Approvals:\n\n{LOAD_TABLE}\n\nAnd the SLAs:\n\n{SLA_TABLE}"

    (message,) = answer_messages(markdown, [APPROVALS], 7)

    assert_valid(message)
    assert kinds(message).count("table") == 1
    assert cells(message.blocks[1])[0] == ["Cargo weight", "Who approves", "Ext."]
    rest = "\n".join(
        block["text"]["text"] for block in message.blocks[2:] if block["type"] == "section"
    )
    assert "```" in rest
    assert "P1       | 15 min" in rest
    assert "P1       | 15 min" in message.text


def test_each_message_of_a_long_answer_may_hold_one_table_block() -> None:
    filler = "\n\n".join(f"Paragraph {n}: " + "words " * 150 for n in range(14))
    markdown = f"{LOAD_TABLE}\n\n{filler}\n\n{SLA_TABLE}"

    messages = answer_messages(markdown, [APPROVALS], 8)

    assert len(messages) == 2
    for message in messages:
        assert_valid(message)
        assert kinds(message).count("table") == 1
    assert cells(next(b for b in messages[1].blocks if b["type"] == "table"))[1] == ["P1", "15 min"]


def test_a_table_quote_is_a_table_block_unless_the_answer_already_shows_one() -> None:
    quote = QuoteRef(markdown=LOAD_TABLE, is_table=True, source=APPROVALS)

    blocks = quote_blocks(quote)
    assert [block["type"] for block in blocks] == ["table", "context"]
    assert blocks[0]["block_id"] == QUOTE_BLOCK_ID
    assert_valid_table(blocks[0])

    (message,) = answer_messages(f"Per the SLAs:\n\n{SLA_TABLE}", [APPROVALS], 9, quote)
    assert_valid(message)
    assert kinds(message).count("table") == 1
    shown_quote = next(block for block in message.blocks if block.get("block_id") == QUOTE_BLOCK_ID)
    assert shown_quote["type"] == "section"
    assert shown_quote["text"]["text"].startswith("```")


def test_a_table_quote_past_the_limits_is_monospace_text() -> None:
    quote = QuoteRef(markdown=wide_table(25), is_table=True, source=APPROVALS)

    blocks = quote_blocks(quote)

    assert [block["type"] for block in blocks] == ["section", "context"]
    assert blocks[0]["block_id"] == QUOTE_BLOCK_ID
    assert blocks[0]["text"]["text"].startswith("```")


def test_tables_past_the_limits_show_exactly_as_before() -> None:
    markdown = f"Two grids:\n{wide_table(21)}\n\n{wide_table(22)}\nThat is all."

    (message,) = answer_messages(markdown, [], 10)

    assert_valid(message)
    assert message.blocks[0]["text"]["text"] == to_mrkdwn(markdown)


def test_split_tables_keeps_every_line_in_order() -> None:
    markdown = f"Intro\n{LOAD_TABLE}\n\n{SLA_TABLE}\n```\n{SLA_TABLE}\n```\nEnd"

    parts = split_tables(markdown)

    assert [type(part).__name__ for part in parts] == [
        "str",
        "MarkdownTable",
        "str",
        "MarkdownTable",
        "str",
    ]
    joined = "\n".join(part if isinstance(part, str) else part.markdown for part in parts)
    assert joined == markdown
    table = parts[3]
    assert isinstance(table, MarkdownTable)
    assert table.rows == (("Priority", "Response"), ("P1", "15 min"), ("P2", "2 h"))
    assert table.alignments == ("left", "left")
