"""Which questions go straight to a person: asking for one, or a sensitive topic."""

from __future__ import annotations

import pytest

from serving.escalation_rules import EscalationRules
from store.settings import DEFAULT_ESCALATION_PHRASES, DEFAULT_SENSITIVE_TERMS

RULES = EscalationRules(DEFAULT_ESCALATION_PHRASES, DEFAULT_SENSITIVE_TERMS)


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("can I talk to a human?", True),
        ("Get me a DISPATCHER now", True),
        ("I need a real   person", True),
        ("who approves a 30,000 lb load?", False),
        ("the human resources policy on uniforms", False),
    ],
)
def test_asking_for_a_person(text: str, asks: bool) -> None:
    assert RULES.asks_for_a_person(text) is asks


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("driver was injured at the dock", "injured"),
        ("small hazmat   leak at door 4", "hazmat   leak"),
        ("Police stopped the truck", "Police"),
        ("trailer STOLEN from the yard", "STOLEN"),
        ("what's the SLA on a P1 reefer ticket?", None),
        ("policeman", None),  # whole words only
        ("accidentally booked twice", None),
    ],
)
def test_sensitive_terms(text: str, term: str | None) -> None:
    assert RULES.sensitive_term(text) == term


def test_operators_choose_the_words() -> None:
    rules = EscalationRules(["call my supervisor"], ["fire"])
    assert rules.asks_for_a_person("please call my supervisor")
    assert not rules.asks_for_a_person("talk to a human")
    assert rules.sensitive_term("there is a fire in bay 2") == "fire"
    assert EscalationRules([], []).sensitive_term("accident") is None
