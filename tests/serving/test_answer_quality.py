"""Scoring answers against the labelled set: facts, unsupported claims, repetition, refusals."""

from __future__ import annotations

import html
import json
from datetime import date
from pathlib import Path

import pytest

from retrieval.search import SearchResult
from serving.answer_quality import (
    LabelledQuestion,
    LabelledSetError,
    QuestionKind,
    prompt_support,
    read_labelled_questions,
    report,
    score_answer,
    spread,
)
from serving.assistant import NOT_COVERED, POLICY_WORDS_LEAD, AssistantAnswer, StageTimings
from serving.claims import SupportIndex, contains_fact
from serving.passages import Block, BlockKind, Passage
from serving.verification import Outcome, Verification

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSWER_SET = REPO_ROOT / "examples" / "eval" / "answers.jsonl"
POLICIES = REPO_ROOT / "examples" / "policies"

LOAD = LabelledQuestion(
    id="load-30k",
    kind=QuestionKind.TABLE,
    question="who approves a 30,000 lb load?",
    doc_id="load-approval",
    section="Approval by weight",
    facts=(("shift lead",), ("4411", "ext. 4411")),
)
WIFI = LabelledQuestion(id="wifi", kind=QuestionKind.UNCOVERED, question="wifi password?")
SUPPORT = SupportIndex(
    ["who approves a 30,000 lb load?", "| 26,001 to 40,000 lb | Shift lead on duty | ext. 4411 |"]
)
SOURCE = SearchResult(
    chunk_id="c1",
    text="| 26,001 to 40,000 lb | Shift lead on duty | ext. 4411 |",
    score=1.0,
    relevance=0.6,
    doc_id="load-approval",
    title="Load Approval Thresholds",
    section="Load Approval Thresholds > Approval by weight",
    version=3,
    effective_from=date(2026, 3, 1),
    effective_to=None,
    audience="dispatch",
    source="load-approval.md",
    tags=(),
)
QUOTE = Passage(
    source=SOURCE,
    blocks=(
        Block(
            BlockKind.TABLE,
            ("| 26,001 to 40,000 lb | Shift lead on duty | Dispatch desk, ext. 4411 |",),
            "| Cargo weight | Who approves | Where to reach them |",
        ),
    ),
    score=1.0,
)


def _answer(
    text: str,
    generated: str | None = None,
    quote: Passage | None = None,
    outcome: Outcome = Outcome.PASSED,
) -> AssistantAnswer:
    return AssistantAnswer(
        answer_id=1,
        conversation_id=1,
        question_message_id=1,
        text=text,
        citations=[],
        needs_human=False,
        confidence=0.6,
        model="smollm2-135m-instruct",
        adapter=None,
        endpoint="http://127.0.0.1:8100/v1",
        latency_ms=900,
        ttft_ms=200,
        prompt_tokens=400,
        completion_tokens=20,
        timings=StageTimings(10, 1, 900, 2),
        quote=quote,
        verification=Verification(outcome),
        generated_text=text if generated is None else generated,
    )


def test_the_labelled_set_is_readable_and_covers_every_kind() -> None:
    questions = read_labelled_questions(ANSWER_SET)

    assert len(questions) >= 60
    assert {question.kind for question in questions} == set(QuestionKind)
    assert len({question.id for question in questions}) == len(questions)
    assert all(question.thread for question in questions if question.kind is QuestionKind.FOLLOWUP)


def test_every_expected_fact_is_in_the_section_it_is_labelled_with() -> None:
    # The raw files: an HTML policy's entities ("28&deg;F") read as the characters they are.
    texts = {path.name: html.unescape(path.read_text("utf-8")) for path in POLICIES.iterdir()}
    for question in read_labelled_questions(ANSWER_SET):
        if not question.covered:
            continue
        documents = [
            text for text in texts.values() if f"doc_id: {question.doc_id}" in text
            or f'content="{question.doc_id}"' in text
        ]  # fmt: skip
        assert documents, question.id
        assert any(question.section in text for text in documents), question.id
        for variants in question.facts:
            assert any(contains_fact(text, variants) for text in documents), (question.id, variants)


def test_a_bad_line_names_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(
        json.dumps({"id": "a", "kind": "fact", "question": "q"}) + "\n", encoding="utf-8"
    )
    with pytest.raises(LabelledSetError, match=r"set\.jsonl:1: .*doc_id, section and facts"):
        read_labelled_questions(path)


def test_a_short_run_takes_each_kind_in_turn() -> None:
    questions = read_labelled_questions(ANSWER_SET)
    first = spread(questions, len(QuestionKind))
    assert {question.kind for question in first} == set(QuestionKind)
    assert spread(questions, None) == questions


def test_a_right_answer_holds_its_facts_and_nothing_unsupported() -> None:
    score = score_answer(
        LOAD, _answer("The shift lead on duty approves it, ext. 4411."), SUPPORT, 1.2
    )

    assert score.shown.all_facts
    assert score.model.all_facts
    assert score.shown.unsupported == ()
    assert score.shown.repeated is None
    assert not score.shown.refused
    assert score.seconds == 1.2


def test_the_policy_words_count_for_what_people_see_not_for_the_model() -> None:
    invented = "Call the dispatcher at 1-800-228-1233. Call the dispatcher at 1-800-228-1233."
    score = score_answer(
        LOAD,
        _answer(POLICY_WORDS_LEAD, invented, QUOTE, Outcome.UNSUPPORTED_CLAIM),
        SUPPORT,
        2.0,
    )

    assert score.shown.all_facts
    assert score.quote_has_facts
    assert score.shown.unsupported == ()
    assert score.shown.repeated is None
    assert score.model.facts_found == 0
    assert score.model.unsupported == ("1-800-228-1233",)
    assert score.model.repeated is not None
    assert score.verification == "unsupported_claim"


def test_refusals_count_against_covered_questions_and_for_uncovered_ones() -> None:
    refused = score_answer(LOAD, _answer(NOT_COVERED, ""), SUPPORT, 0.1)
    assert refused.shown.refused
    assert refused.model.refused

    answered = score_answer(WIFI, _answer("The password is on the board.", quote=QUOTE), SUPPORT, 1)
    assert not answered.shown.refused

    figures = report([refused, answered], [_answer(NOT_COVERED, "")])
    assert figures.shown.covered_refused == 1.0
    assert figures.shown.uncovered_answered == 1
    assert figures.covered == 1
    assert figures.uncovered == 1


def test_support_comes_from_the_stored_prompts_user_turns_only() -> None:
    prompt = json.dumps(
        [
            {"role": "system", "content": "Never invent numbers like 555-0199."},
            {"role": "user", "content": "who approves a 30,000 lb load?"},
            {"role": "assistant", "content": "Call 555-0123."},
            {"role": "user", "content": "Sources: [1] ext. 4411\n\nQuestion: and at night?"},
        ]
    )
    support = prompt_support(prompt)

    from serving.claims import extract_claims

    supported = [support.supports(claim) for claim in extract_claims("30,000 lb, ext. 4411")]
    assert all(supported)
    assert not any(support.supports(c) for c in extract_claims("555-0199 or 555-0123"))
