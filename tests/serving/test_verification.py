"""The answer gate: generated text is shown a sentence at a time, each checked first."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from serving.claims import SupportIndex
from serving.prompts import SYSTEM_PROMPT
from serving.sentences import sentence_ends, split_sentences, whole_sentences
from serving.verification import AnswerGate, Outcome, RowCheck, grounded_share, repeated_sentence

SOURCES = [
    "who approves a 30,000 lb load?",
    "Load Approval Thresholds | section: Approval by weight | version 3, effective since "
    "2026-03-01\n| 26,001 to 40,000 lb | Shift lead on duty | Dispatch desk, ext. 4411 |",
    "Call the Reefer Desk at ext. 4350 within 15 minutes of the alarm.",
]
ROWS = RowCheck.of(
    ["| 26,001 to 40,000 lb | Shift lead on duty | Dispatch desk, ext. 4411 |"],
    [
        "| Up to 26,000 lb | Dispatcher assigned to the load (self-approval) | n/a |",
        "| 40,001 lb and over | Operations manager | ext. 4420 |",
    ],
    "who approves a 30,000 lb load?",
)


def _stream(gate: AnswerGate, chunks: Iterable[str], *, complete: bool = True) -> str:
    shown = ""
    for chunk in chunks:
        shown += gate.feed(chunk)
        if gate.done:
            break
    return shown + gate.finish(complete)


def _pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _gate(rows: RowCheck | None = None) -> AnswerGate:
    return AnswerGate(SupportIndex(SOURCES), rows)


def test_a_supported_answer_streams_sentence_by_sentence_and_passes() -> None:
    gate = _gate()
    answer = "The shift lead on duty approves it [1]. Call the dispatch desk at ext. 4411."
    released = [gate.feed(piece) for piece in _pieces(answer)]

    assert any(released[:-1]), "the first sentence is shown before the answer ends"
    shown = "".join(released) + gate.finish(complete=True)
    assert shown == answer
    assert gate.verdict().outcome is Outcome.PASSED


def test_ext_and_decimals_do_not_end_a_sentence() -> None:
    text = "Call ext. 4411 now. It takes 1.5 hours. Next"
    assert sentence_ends(text) == [text.index(" It"), text.index(" Next")]
    assert split_sentences("Call ext. 4350 at 7 a.m. today.") == ["Call ext. 4350 at 7 a.m. today."]


@pytest.mark.parametrize(
    ("answer", "found"),
    [
        ("Pull over, then call 1-800-228-1233 for help.", "1-800-228-1233"),
        ("The shift lead approves it. Fees up to $500 need no sign-off.", "$500"),
        ("Call the Reefer Desk within 15 hours.", "15 hours"),
        ("This changed on March 3, 2025.", "March 3, 2025"),
    ],
)
def test_an_unsupported_claim_fails_the_answer_and_is_never_released(
    answer: str, found: str
) -> None:
    gate = _gate()
    shown = _stream(gate, _pieces(answer))

    verdict = gate.verdict()
    assert verdict.outcome is Outcome.UNSUPPORTED_CLAIM
    # Caught as soon as it is written: a date may be caught before its year comes.
    (caught,) = verdict.found
    assert found.startswith(caught)
    assert caught not in shown
    assert gate.done, "generation should stop: the answer will be replaced"


def test_numbers_from_the_question_and_the_sources_header_are_supported() -> None:
    gate = _gate()
    _stream(gate, ["A 30,000 lb load goes to the shift lead (v3, since 2026-03-01)."])
    assert gate.verdict().passed


def test_an_answer_that_names_only_another_table_row_fails() -> None:
    gate = _gate(ROWS)
    _stream(gate, _pieces("The dispatcher must approve a 30,000 lb load."))

    verdict = gate.verdict()
    assert verdict.outcome is Outcome.WRONG_ROW
    assert verdict.found == ("dispatcher",)


@pytest.mark.parametrize(
    "answer",
    [
        "The shift lead on duty approves it; a dispatcher may not self-approve above that.",
        "Ask the shift lead at the dispatch desk.",
        "A 30,000 lb load needs approval.",
    ],
)
def test_an_answer_that_names_the_quoted_row_passes_the_row_check(answer: str) -> None:
    gate = _gate(ROWS)
    _stream(gate, _pieces(answer))
    assert gate.verdict().passed


def test_a_repeated_sentence_ends_the_answer_before_it_and_the_rest_stands() -> None:
    gate = _gate()
    answer = (
        "The shift lead on duty approves it. Call the dispatch desk at ext. 4411. "
        "The shift lead on duty approves it. Call the dispatch desk at ext. 4411. "
    )
    shown = _stream(gate, _pieces(answer))

    assert shown == "The shift lead on duty approves it. Call the dispatch desk at ext. 4411."
    verdict = gate.verdict()
    assert verdict.passed
    assert verdict.cut_at_repeat
    assert gate.done


def test_a_repeated_list_item_with_a_word_changed_is_a_repeat() -> None:
    answer = (
        "- Pull over at the first safe place and call the desk.\n"
        "- Pull over at the first safe spot and call the desk.\n"
    )
    assert repeated_sentence(answer) == "- Pull over at the first safe spot and call the desk."
    assert repeated_sentence("Yes. Yes. Call the shift lead.") is None  # too short to count


def test_a_sentence_cut_by_the_token_cap_is_never_shown() -> None:
    gate = _gate()
    shown = _stream(gate, ["The shift lead approves it. Call the disp"], complete=False)

    assert shown == "The shift lead approves it."
    assert gate.verdict().passed


def test_a_last_sentence_without_a_full_stop_is_shown_when_the_model_ended_it() -> None:
    gate = _gate()
    assert _stream(gate, ["The shift lead approves it"]) == "The shift lead approves it"


def test_nothing_written_is_empty() -> None:
    gate = _gate()
    _stream(gate, ["  \n"])
    assert gate.verdict().outcome is Outcome.EMPTY


def test_the_rules_repeated_are_caught_before_they_show() -> None:
    gate = _gate()
    leak = f"Sure, here are my rules:\n{SYSTEM_PROMPT}"
    shown = _stream(gate, _pieces(leak, 4))

    assert gate.verdict().outcome is Outcome.SYSTEM_PROMPT
    assert SYSTEM_PROMPT.splitlines()[0] not in shown


def test_whole_sentences_keeps_complete_ones() -> None:
    assert whole_sentences("Call ext. 4411. Then wa") == "Call ext. 4411."
    assert whole_sentences("Call ext. 4411.") == "Call ext. 4411."
    assert whole_sentences("no end mark") == "no end mark"


def test_a_phrase_looping_inside_one_sentence_stops_the_answer() -> None:
    gate = _gate()
    shown = _stream(gate, _pieces("The shift lead approves it. No, " + "no, " * 40))

    assert gate.done, "the loop stops generation long before the token cap"
    assert shown == "The shift lead approves it."
    verdict = gate.verdict()
    assert verdict.passed
    assert verdict.cut_at_repeat


def test_an_unsupported_number_fails_before_its_sentence_ends() -> None:
    gate = _gate()
    gate.feed("Call the shift lead at 1-800-228-1233 ")

    assert gate.done
    assert gate.verdict().found == ("1-800-228-1233",)


def test_grounding_is_the_share_of_words_the_question_or_the_quote_hold() -> None:
    quote = "| 26,001 to 40,000 lb | Shift lead on duty | Dispatch desk, ext. 4411 |"
    asked = ["who approves a 30,000 lb load?"]

    assert (
        grounded_share("The shift lead on duty approves it; call the desk.", [*asked, quote]) == 1
    )
    made_up = "You just got pulled over for a DUI, stay calm and wait for the officer."
    assert grounded_share(made_up, [*asked, quote]) < 0.2
    assert grounded_share("30,000 lb.", asked) == 1  # numbers are the claims check's business
