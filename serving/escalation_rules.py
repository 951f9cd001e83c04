"""Which questions go to a person before the model sees them: asks for one, or sensitive.

Plain word matching on purpose: it is predictable, configurable by operators
(ESCALATION_PHRASES, ESCALATION_SENSITIVE_TERMS) and errs towards bringing a person in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from store.settings import Settings


def _pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    words = [r"\s+".join(map(re.escape, term.split())) for term in terms if term.strip()]
    if not words:
        return None
    return re.compile(r"(?<!\w)(" + "|".join(words) + r")(?!\w)", re.IGNORECASE)


class EscalationRules:
    def __init__(self, phrases: Iterable[str], sensitive_terms: Iterable[str]) -> None:
        self._asks = _pattern(phrases)
        self._sensitive = _pattern(sensitive_terms)

    @classmethod
    def from_settings(cls, settings: Settings) -> EscalationRules:
        return cls(settings.escalation_phrases, settings.escalation_sensitive_terms)

    def asks_for_a_person(self, text: str) -> bool:
        return bool(self._asks and self._asks.search(text))

    def sensitive_term(self, text: str) -> str | None:
        """The first sensitive term in the text, as written there; None when there is none."""
        match = self._sensitive.search(text) if self._sensitive else None
        return match.group(1) if match else None
