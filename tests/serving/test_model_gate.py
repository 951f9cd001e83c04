"""The promotion gate on paired answers: better on facts beyond chance, no worse beyond chance
on unsupported claims, repetition and answering uncovered questions; stored and honoured."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.commands import evaluate as evaluate_command
from serving.answer_quality import AnswerScore, QuestionKind, TextScore, report
from serving.evaluation import ModelJudgement, VersionReport
from serving.model_gate import (
    GateResult,
    Measure,
    PairingError,
    judge,
    needed_wins,
    tail,
    version_scores,
)
from serving.promotion import PromotionError, active_versions, promote
from store import repository
from store.database import Database


def _answer(
    id: str,
    *,
    covered: bool = True,
    facts: bool = False,
    unsupported: bool = False,
    repeats: bool = False,
    refused: bool = False,
    text: str = "The shift lead approves it [1].",
    seconds: float = 1.0,
) -> AnswerScore:
    expected = 2 if covered else 0
    model = TextScore(
        facts_found=expected if facts else 0,
        facts_expected=expected,
        unsupported=("$4,000",) if unsupported else (),
        repeated="Call the desk." if repeats else None,
        refused=refused,
    )
    return AnswerScore(
        id=id,
        kind=QuestionKind.FACT if covered else QuestionKind.UNCOVERED,
        covered=covered,
        shown=model,
        model=model,
        quote_has_facts=covered,
        verification="passed",
        seconds=seconds,
        answer=text,
        quote="",
        generated=text,
    )


def _pairs(
    *,
    better: int = 0,
    worse: int = 0,
    both: int = 10,
    neither: int = 20,
    uncovered: int = 5,
) -> tuple[list[AnswerScore], list[AnswerScore]]:
    """Covered questions split by who holds the facts, then uncovered ones both refuse."""
    split = [(True, False)] * better + [(False, True)] * worse
    split += [(True, True)] * both + [(False, False)] * neither
    candidate = [_answer(f"q{i}", facts=ours) for i, (ours, _) in enumerate(split)]
    incumbent = [_answer(f"q{i}", facts=theirs) for i, (_, theirs) in enumerate(split)]
    for i in range(uncovered):
        candidate.append(_answer(f"u{i}", covered=False, refused=True))
        incumbent.append(_answer(f"u{i}", covered=False, refused=True))
    return candidate, incumbent


def _changed(answers: list[AnswerScore], ids: set[str], **change: bool) -> list[AnswerScore]:
    """The answers to `ids` with an unsupported claim, a repeat or a refusal set as given."""
    return [
        _answer(
            a.id,
            covered=a.covered,
            facts=a.model.all_facts and a.covered,
            unsupported=change.get("unsupported", bool(a.model.unsupported)),
            repeats=change.get("repeats", a.model.repeated is not None),
            refused=change.get("refused", a.model.refused),
        )
        if a.id in ids
        else a
        for a in answers
    ]


def _ids(*numbers: int, prefix: str = "q") -> set[str]:
    return {f"{prefix}{n}" for n in numbers}


def test_the_tail_and_the_margin_it_sets() -> None:
    assert tail(5, 5) == 1 / 32
    assert tail(0, 0) == 1.0
    assert needed_wins(4) is None  # 4 to 0 happens by luck one time in 16
    assert [needed_wins(n) for n in (5, 8, 11, 20)] == [5, 7, 9, 15]


def test_a_candidate_better_beyond_chance_and_no_worse_passes() -> None:
    candidate, incumbent = _pairs(better=8, worse=1)

    result = judge(candidate, incumbent)

    assert result.passed, result.reasons
    assert result.reasons == []
    facts = result.comparison(Measure.FACTS_PRESENT)
    assert (facts.pairs, facts.candidate_better, facts.candidate_worse) == (39, 8, 1)
    assert facts.margin == 7
    assert facts.p_value == pytest.approx(10 / 512)
    assert facts.needed == 8
    assert result.questions == 44


def test_facts_that_are_not_better_fail() -> None:
    result = judge(*_pairs(better=2, worse=3))

    assert not result.passed
    [reason] = result.reasons
    assert "expected facts" in reason
    assert "2 questions better, 3 worse" in reason


@pytest.mark.parametrize(("better", "worse"), [(4, 0), (6, 1)])
def test_an_improvement_within_the_margin_fails(better: int, worse: int) -> None:
    result = judge(*_pairs(better=better, worse=worse))

    assert not result.passed
    assert result.comparison(Measure.FACTS_PRESENT).p_value > 0.05
    [reason] = result.reasons
    assert "not better beyond chance" in reason
    assert ("too few" in reason) if better + worse < 5 else ("needs 7 of the 7" in reason)


def test_more_unsupported_claims_fail_but_a_few_traded_places_do_not() -> None:
    candidate, incumbent = _pairs(better=8)

    regressed = judge(_changed(candidate, _ids(*range(6)), unsupported=True), incumbent)

    assert not regressed.passed
    assert regressed.comparison(Measure.UNSUPPORTED).p_value == 1 / 64
    [reason] = regressed.reasons
    assert "unsupported claims" in reason
    assert "0 questions better, 6 worse" in reason

    noise = judge(
        _changed(candidate, _ids(0, 1, 2), unsupported=True),
        _changed(incumbent, _ids(3), unsupported=True),
    )
    unsupported = noise.comparison(Measure.UNSUPPORTED)
    assert (unsupported.candidate_worse, unsupported.candidate_better) == (3, 1)
    assert noise.passed


def test_more_repetition_fails() -> None:
    candidate, incumbent = _pairs(better=8)

    result = judge(_changed(candidate, _ids(*range(10, 15)), repeats=True), incumbent)

    assert not result.passed
    assert result.comparison(Measure.REPEATING).p_value == 1 / 32
    [reason] = result.reasons
    assert "repeating a sentence" in reason


def test_answering_uncovered_questions_fails() -> None:
    candidate, incumbent = _pairs(better=8, uncovered=6)

    result = judge(_changed(candidate, _ids(*range(5), prefix="u"), refused=False), incumbent)

    assert not result.passed
    uncovered = result.comparison(Measure.UNCOVERED_ANSWERED)
    assert (uncovered.pairs, uncovered.candidate_worse) == (6, 5)
    [reason] = result.reasons
    assert "uncovered questions" in reason


def test_answers_to_other_questions_cannot_be_judged() -> None:
    candidate, incumbent = _pairs(better=8)
    with pytest.raises(PairingError, match=r"first difference at #1: 'q1' vs 'q0'"):
        judge([candidate[1], candidate[0], *candidate[2:]], incumbent)
    with pytest.raises(PairingError, match="43 and 42"):
        judge(candidate, incumbent[:-1])
    with pytest.raises(PairingError, match="no answers"):
        judge([], [])


def test_version_scores_read_the_models_own_text() -> None:
    answers = [
        _answer("a", facts=True, text="The shift lead approves it [1].", seconds=1.0),
        _answer("b", text="Sure! Ask the desk.", seconds=3.0),
        _answer("c", text="", refused=True, seconds=0.5),  # never reached the model
        _answer("u", covered=False, refused=True, text="The policy does not cover it.", seconds=2),
    ]

    scores = version_scores(answers)

    assert (scores.questions, scores.covered, scores.uncovered) == (4, 3, 1)
    assert scores.facts_present == pytest.approx(1 / 3)
    assert scores.citing == 0.5  # of the covered answers the model wrote
    assert scores.to_the_point == pytest.approx(2 / 3)
    assert scores.words == pytest.approx((6 + 4 + 6) / 3)
    assert (scores.uncovered_refused, scores.covered_refused) == (1.0, pytest.approx(1 / 3))
    assert scores.median_seconds == 1.5


def _judgement(candidate: list[AnswerScore], incumbent: list[AnswerScore]) -> ModelJudgement:
    return ModelJudgement(
        candidate=VersionReport(
            name="acme-v2", scores=version_scores(candidate), citation_validity=1.0,
            rouge_l=None, heldout=0,
        ),
        incumbent=VersionReport(
            name="base", scores=version_scores(incumbent), citation_validity=1.0,
            rouge_l=None, heldout=0,
        ),
        gate=judge(candidate, incumbent),
        candidate_answers=report(candidate, []),
        incumbent_answers=report(incumbent, []),
        evaluated_at=datetime(2026, 11, 24, tzinfo=UTC),
    )  # fmt: skip


def _stored(candidate: list[AnswerScore], incumbent: list[AnswerScore]) -> dict[str, Any]:
    """What `evaluate model` stores on the candidate, through JSON as the store keeps it."""
    return {"evaluation": json.loads(json.dumps(_judgement(candidate, incumbent).stored()))}


def test_the_verdict_round_trips_through_json() -> None:
    candidate, incumbent = _pairs(better=2, worse=3)
    stored = _stored(candidate, incumbent)

    assert GateResult.stored_on(stored) == judge(candidate, incumbent)
    assert stored["evaluation"]["gate"]["comparisons"][0]["margin"] == -1
    assert stored["evaluation"]["incumbent"]["scores"]["questions"] == 40
    assert GateResult.stored_on({}) is None
    assert GateResult.stored_on({"evaluation": {"gate": {"passed": True}}}) is None


def test_promote_honours_the_stored_verdict(database: Database, tmp_path: Path) -> None:
    passing, failing = _stored(*_pairs(better=8)), _stored(*_pairs(better=4))
    # A verdict of an earlier gate, with nothing to check it by: judge the version again.
    earlier = {"evaluation": {"gate": {"passed": True, "reasons": []}}}
    for name, metrics in (("good", passing), ("lucky", failing), ("old", earlier)):
        adapter = tmp_path / name
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text("{}")
        with database.transaction() as session:
            repository.register_model_version(
                session, name=name, base_model="smollm2-135m-instruct",
                adapter_path=str(adapter), dataset_hash="abc", metrics=metrics,
            )  # fmt: skip

    for name in ("lucky", "old"):
        with database.transaction() as session, pytest.raises(PromotionError, match="gate"):
            promote(session, name, endpoints=[])
    with database.transaction() as session:
        promote(session, "good", endpoints=[])
        assert active_versions(session).promoted == "good"


def test_the_table_shows_both_versions_and_why_the_gate_failed() -> None:
    candidate, incumbent = _pairs(better=4)
    with evaluate_command.console.capture() as captured:
        evaluate_command.print_judgement(_judgement(candidate, incumbent))
    printed = captured.get()

    assert "acme-v2" in printed
    assert "base" in printed
    assert "expected facts present" in printed
    assert "Gate not passed" in printed
    assert "4 questions differ: too few for any split to count" in printed
