"""Passage selection: the policy's own words for a question, from a table, a list or prose."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date

import pytest

from retrieval.search import SearchResult
from serving.passages import BlockKind, select_passage, split_blocks

APPROVAL = """\
Approval is recorded in the TMS on the load record.

| Cargo weight | Who approves | Where to reach them |
|---|---|---|
| Up to 26,000 lb | Dispatcher assigned to the load (self-approval) | n/a |
| 26,001 to 40,000 lb | Shift lead on duty | Dispatch desk, ext. 4411 |
| 40,001 lb and over | Operations manager | ext. 4420 |

A dispatcher may never approve their own load above 26,000 lb."""

ALARM_STEPS = """\
- Pull over at the first safe place, within 15 minutes of the alarm.
- Check that the doors are shut and the setpoint matches the BOL.
- Call the Reefer Desk at ext. 4350 and read out the display.
- Do not open the doors unless the Reefer Desk tells you to."""

UPDATES = """\
Until the ticket is resolved, the owner updates the customer at least:

- every 30 minutes for P1;
- every 2 hours for P2;
- once per business day for P3;
- when there is news for P4."""

TIMING = (
    "Approval must be entered in the TMS before the driver is dispatched. The record shows the "
    "approver's name, the weight used and a timestamp. Outside business hours an approver may "
    "give approval by phone; the approver confirms it within 2 hours. A load dispatched "
    "without a recorded approval is a policy breach and is reviewed by the operations manager. "
    "Records are kept for three years and audited every quarter by the compliance team, who "
    "report breaches to the regional director with the load number and the dispatcher's name."
)

# A pipe table as the HTML loader writes it: no outer pipes, no separator line.
SETPOINTS = """\
Commodity | Setpoint | Allowed deviation
Ice cream | -20°F | ±2°F
Fresh meat and poultry | 28°F | ±2°F
Bananas | 58°F | ±1°F"""


def _source(text: str, section: str = "Policy > Section", doc_id: str = "policy") -> SearchResult:
    return SearchResult(
        chunk_id=f"{doc_id}-{section}",
        text=text,
        score=1.0,
        relevance=0.6,
        doc_id=doc_id,
        title="Policy",
        section=section,
        version=3,
        effective_from=date(2026, 3, 1),
        effective_to=None,
        audience="dispatch",
        source="policy.md",
        tags=(),
    )


def _no_meaning(question: str, texts: Sequence[str]) -> list[float]:
    return [0.0] * len(texts)


def test_blocks_keep_prose_lists_and_tables_apart() -> None:
    blocks = split_blocks(f"{APPROVAL}\n\n{UPDATES}")

    assert [block.kind for block in blocks] == [
        BlockKind.PROSE,
        BlockKind.TABLE,
        BlockKind.PROSE,
        BlockKind.PROSE,
        BlockKind.LIST,
    ]
    table = blocks[1]
    assert table.header == "| Cargo weight | Who approves | Where to reach them |"
    assert len(table.units) == 3  # the separator line is no row
    assert (
        blocks[4].lead_in
        == "Until the ticket is resolved, the owner updates the customer at least:"
    )


def test_a_pipe_table_without_outer_pipes_is_a_table() -> None:
    (table,) = split_blocks(SETPOINTS)

    assert table.kind is BlockKind.TABLE
    assert table.header == "Commodity | Setpoint | Allowed deviation"
    assert table.units[1] == "Fresh meat and poultry | 28°F | ±2°F"


@pytest.mark.parametrize(
    ("question", "row"),
    [
        ("who approves a 30,000 lb load?", "26,001 to 40,000 lb"),
        ("got a 42k lb load who signs off", "40,001 lb and over"),
        ("25000 lbs, can i ok it myself", "Up to 26,000 lb"),
    ],
)
def test_a_number_in_a_table_range_quotes_that_row_under_the_header(
    question: str, row: str
) -> None:
    passage = select_passage(question, [_source(APPROVAL)], similarity=_no_meaning)

    assert passage is not None
    assert passage.kind is BlockKind.TABLE
    (table,) = passage.blocks
    assert table.header is not None
    assert "Who approves" in table.header
    assert [unit.split("|")[1].strip() for unit in table.units] == [row]
    assert len(passage.other_rows) == 2
    assert passage.markdown.splitlines()[1] == "|---|---|---|"


def test_a_number_with_another_unit_is_not_read_against_the_range() -> None:
    speeding = (
        "| Event | Points |\n|---|---|\n| Speeding 11 to 15 mph over | 4 |\n| Phone use | 8 |"
    )
    passage = select_passage(
        "driver got 14 pts for speeding", [_source(speeding)], similarity=_no_meaning
    )

    assert passage is not None
    assert passage.other_rows == ()  # not read by the number: 14 points is not 11 to 15 mph


def test_a_time_of_day_is_not_a_number_to_look_up() -> None:
    passage = select_passage(
        "its 11pm, who approves it",
        [_source(APPROVAL)],
        earlier_question="who approves a 41,500 lb load",
        similarity=_no_meaning,
    )

    assert passage is not None
    assert "Operations manager" in passage.markdown  # the earlier question's weight decides


def test_a_short_procedure_is_quoted_whole_and_in_order() -> None:
    passage = select_passage(
        "reefer alarm going off, do i call the reefer desk?",
        [_source(ALARM_STEPS, "Reefer > Driver steps on an alarm")],
        similarity=_no_meaning,
    )

    assert passage is not None
    assert passage.kind is BlockKind.LIST
    assert passage.markdown == ALARM_STEPS


def test_a_list_keeps_the_sentence_that_introduces_it() -> None:
    passage = select_passage(
        "how often do i update the customer on a p2",
        [_source(UPDATES, "SLAs > Update cadence")],
        similarity=_no_meaning,
    )

    assert passage is not None
    assert passage.markdown.startswith("Until the ticket is resolved, the owner updates")
    assert "- every 2 hours for P2;" in passage.markdown


def test_long_prose_is_trimmed_to_the_sentences_that_answer() -> None:
    passage = select_passage(
        "how long does the approver have to confirm a phone approval",
        [_source(TIMING, "Load Approval > Approval timing and records")],
        similarity=_no_meaning,
    )

    assert passage is not None
    assert "confirms it within 2 hours" in passage.markdown
    assert len(passage.markdown) < len(TIMING)
    # Whatever is kept is verbatim, in reading order.
    kept = [unit for block in passage.blocks for unit in block.units]
    assert all(unit in TIMING for unit in kept)
    assert [TIMING.index(unit) for unit in kept] == sorted(TIMING.index(unit) for unit in kept)


def test_meaning_finds_a_row_that_shares_no_word_with_the_question() -> None:
    def poultry_is_chicken(question: str, texts: Sequence[str]) -> list[float]:
        return [0.9 if "poultry" in text else 0.1 for text in texts]

    passage = select_passage(
        "what temp does chicken ride at",
        [_source(SETPOINTS, "Reefer > Setpoints by commodity")],
        similarity=poultry_is_chicken,
    )

    assert passage is not None
    assert "Fresh meat and poultry | 28°F" in passage.markdown


def test_the_passage_comes_from_the_section_that_answers() -> None:
    sources = [
        _source(TIMING, "Load Approval > Approval timing and records", "load-approval"),
        _source(ALARM_STEPS, "Reefer > Driver steps on an alarm", "reefer"),
    ]

    passage = select_passage("reefer alarm, when do i pull over", sources, similarity=_no_meaning)

    assert passage is not None
    assert passage.source.doc_id == "reefer"


def test_nothing_in_common_is_no_passage() -> None:
    assert select_passage("wifi password?", [_source(APPROVAL)]) is None
    assert select_passage("anything", []) is None


def test_a_quote_never_cuts_a_row_or_a_sentence() -> None:
    long_table = "| Item | Limit |\n|---|---|\n" + "\n".join(
        f"| Item number {n} with a long description of what it is | ${n * 100} |" for n in range(40)
    )
    passage = select_passage(
        "what is the limit for item number 7",
        [replace(_source(long_table), section="Limits")],
        similarity=_no_meaning,
    )

    assert passage is not None
    rows = passage.markdown.splitlines()[2:]
    assert rows
    assert all(row.startswith("| Item number") and row.endswith("|") for row in rows)


def test_the_sentence_that_introduces_a_list_shows_once() -> None:
    long_updates = UPDATES + "\n\n" + TIMING  # long enough to be trimmed
    passage = select_passage(
        "how often do i update the customer on a p2 ticket",
        [_source(long_updates, "SLAs > Update cadence")],
        similarity=_no_meaning,
    )

    assert passage is not None
    assert passage.markdown.count("the owner updates the customer at least:") == 1
