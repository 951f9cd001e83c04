"""The scores a model version is judged on, and the gate that decides promotion."""

from __future__ import annotations

import pytest

from serving.evaluation import EvalItem, ItemKind, gate, rouge_l, score, valid_citations


def _item(kind: ItemKind, reference: str | None = None, sources: int = 2) -> EvalItem:
    return EvalItem(kind, [{"role": "user", "content": "q"}], sources, reference)


def test_rouge_l_is_the_longest_common_subsequence_f1() -> None:
    assert rouge_l("the shift lead approves it", "the shift lead approves it") == 1.0
    assert rouge_l("lead shift the", "the shift lead") == pytest.approx(1 / 3)
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("Call 1-800-555-0142 now", "call 1-800-555-0142") > 0.7


def test_citations_must_point_at_given_sources() -> None:
    assert valid_citations("Approved by the lead [1] and logged [2].", 2)
    assert valid_citations("No citation at all.", 0)
    assert not valid_citations("Per policy [3].", 2)
    assert not valid_citations("Per policy [0].", 2)


def test_scores_and_the_gate() -> None:
    good = score(
        "good",
        [
            (
                _item(ItemKind.REFERENCE, "The shift lead approves it [1]."),
                "The shift lead approves it [1].",
                900.0,
            ),
            (_item(ItemKind.ANSWERABLE), "Call the safety line first [2].", 1100.0),
            (
                _item(ItemKind.UNANSWERABLE),
                "The policy does not cover this; ask a dispatcher.",
                500.0,
            ),
        ],
    )
    weak = score(
        "weak",
        [
            (
                _item(ItemKind.REFERENCE, "The shift lead approves it [1]."),
                "Sure! A manager does [4].",
                800.0,
            ),
            (_item(ItemKind.ANSWERABLE), "Great question, it depends.", 700.0),
            (_item(ItemKind.UNANSWERABLE), "It is 42 minutes.", 600.0),
        ],
    )

    assert (good.citation_validity, good.citing, good.refusal) == (1.0, 1.0, 1.0)
    assert good.rouge_l == 1.0
    assert good.to_the_point == 1.0
    assert weak.citation_validity == pytest.approx(2 / 3)
    assert (weak.citing, weak.refusal, weak.to_the_point) == (0.5, 0.0, pytest.approx(1 / 3))
    assert good.median_latency_ms == 900.0
    assert gate(good, weak).passed
    verdict = gate(weak, good)
    assert not verdict.passed
    assert len(verdict.reasons) == 3  # citations, refusals and the reference overlap


def test_the_gate_needs_reference_answers() -> None:
    answers = [(_item(ItemKind.ANSWERABLE), "Do X [1].", 10.0)]
    verdict = gate(score("a", answers), score("b", answers))
    assert not verdict.passed
    assert "held-out" in verdict.reasons[0]
