"""When a person's verified answer answers a new question, and when it only informs one.

A verified answer is reused as it stands only for the same question: its embedding close
to the one it was saved for (REUSE_SIMILARITY, chosen on examples/eval/paraphrases.jsonl
so that at least 95% of reuses are right: a wrong verified answer is worse than none) and
the same figures in both ("30,000 lb" is not "45,000 lb", however close the words). Less
close, but still near (SOURCE_SIMILARITY), it goes to the model as a source beside the
policy, marked as a person's answer.
"""

from __future__ import annotations

import re

from retrieval.verified import VerifiedMatch
from serving.claims import extract_claims

# On examples/eval/paraphrases.jsonl (713 pairs; python -m bench verified-matching):
REUSE_SIMILARITY = 0.84  # precision 0.956, recall 0.212 (similarity alone: precision 0.829)
SOURCE_SIMILARITY = 0.46  # recall 0.951; the closest answer it lets in is on topic 84% of the time
_DIGITS = re.compile(r"\D")


def figures(question: str) -> frozenset[str]:
    """The numbers a question turns on, written one way: "P1", "priority-1" are both "1"."""
    found = set()
    for claim in extract_claims(question):
        digits = _DIGITS.sub("", claim.value)
        found.add(digits or claim.value.casefold())
    return frozenset(found)


def reusable(question: str, match: VerifiedMatch, threshold: float = REUSE_SIMILARITY) -> bool:
    """The verified answer answers `question` as it stands."""
    return match.similarity >= threshold and figures(question) == figures(match.phrasing)


def informs(match: VerifiedMatch, threshold: float = SOURCE_SIMILARITY) -> bool:
    """Close enough to put before the model as a source, marked as a person's answer."""
    return match.similarity >= threshold
