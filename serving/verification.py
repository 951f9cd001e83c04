"""Nothing the model writes reaches a person before it is checked against its sources.

`AnswerGate` lets generated text through one sentence (or list item) at a time. Each
sentence must hold no number, amount, contact, time or date that is in neither the question
nor the sources the model was given, and must not repeat the model's rules; otherwise the
answer fails and generation should stop, since the whole answer will be replaced by the
policy's own words. A sentence that repeats an earlier one ends the answer there instead: the
text before it stands. What the gate never released (the start of a sentence cut by the
token cap) is never shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from retrieval.sparse import STOP_WORDS, terms
from serving.claims import SupportIndex, unsupported_claims
from serving.guard import reveals_system_prompt
from serving.sentences import sentence_ends, split_sentences

# Sentences shorter than this many words are not compared for repetition ("Yes." twice).
REPEAT_MIN_WORDS = 3
# Word overlap (Jaccard) from which two sentences are one repeated with a word changed.
NEAR_REPEAT_OVERLAP = 0.8
NEAR_REPEAT_MIN_WORDS = 6
# A phrase of up to this many words said this many times in a row is a loop, not a sentence.
LOOP_PHRASE_WORDS = 8
LOOP_TIMES = 4

# An answer saying the sources do not cover the question. "Ask a dispatcher" alone is not
# one: approved answers close with it after answering.
_REFUSAL = re.compile(
    r"\b(not covered|do(?:es)? not (?:cover|say|mention)|doesn'?t (?:cover|say|mention)|"
    r"don'?t have|do not have|no policy|(?:couldn'?t|could not|can'?t|cannot) find|"
    r"not in the (?:sources|policy)|i (?:do not|don'?t) know|not sure|"
    r"(?:not able|unable) to (?:answer|provide|help))\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W_]+")
# Words of the house voice itself, which no policy needs to hold.
_VOICE_TERMS = frozenset(
    terms(
        "yes no you your need needs must can may should ask call check contact tell dispatcher "
        "supervisor policy please sure answer question"
    )
)
_CITATION_MARK = re.compile(r"\[\d{1,2}\]")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+")


class Outcome(StrEnum):
    """Why an answer was, or was not, shown as written."""

    PASSED = "passed"
    UNSUPPORTED_CLAIM = "unsupported_claim"
    WRONG_ROW = "wrong_row"  # names what only a table row the question is not in says
    REPETITION = "repetition"
    SYSTEM_PROMPT = "system_prompt"
    OFF_TOPIC = "off_topic"  # not close in meaning to the policy's words it rests on
    UNGROUNDED = "ungrounded"  # most of its words are in neither the question nor the quote
    EMPTY = "empty"
    NOT_GENERATED = "not_generated"  # no model call: not covered, or answered otherwise


@dataclass(frozen=True)
class Verification:
    """The verdict on one answer, as `answers.verification` records it."""

    outcome: Outcome
    found: tuple[str, ...] = ()  # the unsupported claims as written, or the repeated sentence
    cut_at_repeat: bool = False  # generation was stopped at a sentence it had written before

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "found": list(self.found),
            "cut_at_repeat": self.cut_at_repeat,
        }


@dataclass(frozen=True)
class RowCheck:
    """What the quoted rows of a table say, against what only its other rows say.

    "The dispatcher approves it" for a 30,000 lb load names the row below the one the
    weight falls in: no number is wrong, the row is. A sentence that names something only
    the other rows say, and nothing the quoted rows say, has read the wrong row.
    """

    quoted: frozenset[str]
    elsewhere: frozenset[str]

    @classmethod
    def of(cls, quoted_rows: Sequence[str], other_rows: Sequence[str], question: str) -> RowCheck:
        # The first cell is what the row is looked up by (a range); the rest is what it says.
        # Words are compared as written ("dispatcher" is not "Dispatch desk"), but a word the
        # question asks about in any form ("approval" for "approves") names no row.
        quoted = frozenset(w for row in quoted_rows for w in _cell_words(row))
        asked = frozenset(terms(question))
        elsewhere = frozenset(
            word
            for row in other_rows
            for word in _cell_words(row)
            if word not in quoted and not set(terms(word)) & asked
        )
        return cls(quoted, elsewhere)

    def names_another_row(self, sentence: str) -> tuple[str, ...]:
        words = set(_words(sentence))
        if words & self.quoted:
            return ()
        return tuple(sorted(words & self.elsewhere))


NOT_GENERATED = Verification(Outcome.NOT_GENERATED)


class AnswerGate:
    """Feed it the stream's chunks; it returns the text that may be shown so far."""

    def __init__(self, support: SupportIndex, rows: RowCheck | None = None) -> None:
        self._support = support
        self._rows = rows
        self._text = ""  # everything generated
        self._released = 0  # characters of `_text` checked and let through
        self._seen: list[frozenset[str]] = []  # the word sets of the sentences let through
        self._seen_keys: set[str] = set()
        self._failure: Verification | None = None
        self._cut_at_repeat = False

    @property
    def done(self) -> bool:
        """Generation should stop: the answer failed, or it began repeating itself."""
        return self._failure is not None or self._cut_at_repeat

    @property
    def released(self) -> str:
        return self._text[: self._released]

    def feed(self, chunk: str) -> str:
        """Take a streamed chunk; returns the newly released text ("" for none)."""
        if self.done:
            return ""
        self._text += chunk
        released = self._release(sentence_ends(self._text))
        if not self.done:
            self._check_unfinished()
        return released

    def finish(self, complete: bool) -> str:
        """The stream ended; `complete` when the model stopped by itself (not cut by the
        token cap), so its last sentence is whole even without a full stop."""
        if self.done or not complete:
            return ""
        return self._release([len(self._text)])

    def verdict(self) -> Verification:
        if self._failure is not None:
            return self._failure
        if not self.released.strip():
            return Verification(Outcome.EMPTY)
        return Verification(Outcome.PASSED, cut_at_repeat=self._cut_at_repeat)

    def _release(self, ends: Iterable[int]) -> str:
        start = self._released
        for end in ends:
            if end <= self._released:
                continue
            sentence = self._text[self._released : end]
            if not self._admit(sentence):
                break
            self._released = end
        return self._text[start : self._released]

    def _check_unfinished(self) -> None:
        """The sentence still being written: a claim in it already fails the answer, and a
        phrase looping ("no, no, no, ...") ends it, since no sentence end may ever come."""
        pending = self._text[self._released :]
        complete = pending[: max(pending.rfind(" "), pending.rfind("\n"))]  # whole words
        if not complete:
            return
        claims = unsupported_claims(complete, self._support)
        if claims:
            self._failure = Verification(
                Outcome.UNSUPPORTED_CLAIM, tuple(claim.text for claim in claims)
            )
        elif _loops(_words(complete)):
            self._cut_at_repeat = True

    def _admit(self, sentence: str) -> bool:
        claims = unsupported_claims(sentence, self._support)
        if claims:
            self._failure = Verification(
                Outcome.UNSUPPORTED_CLAIM, tuple(claim.text for claim in claims)
            )
            return False
        wrong_row = self._rows.names_another_row(sentence) if self._rows is not None else ()
        if wrong_row:
            self._failure = Verification(Outcome.WRONG_ROW, wrong_row)
            return False
        if reveals_system_prompt(self._text[: self._released] + sentence):
            self._failure = Verification(Outcome.SYSTEM_PROMPT)
            return False
        words = _words(sentence)
        if len(words) >= REPEAT_MIN_WORDS:
            if _repeats(words, self._seen, self._seen_keys):
                self._cut_at_repeat = True
                return False
            self._seen.append(frozenset(words))
            self._seen_keys.add(" ".join(words))
        return True


def grounded_share(text: str, grounds: Sequence[str]) -> float:
    """The share of `text`'s words (stemmed; numbers left to the claims check) that `grounds`
    or the house voice also use: what an answer says beyond them, it made up."""
    words = [term for term in terms(text) if not term[0].isdigit()]
    if not words:
        return 1.0
    known = _VOICE_TERMS.union(*(terms(ground) for ground in grounds))
    return sum(word in known for word in words) / len(words)


def is_refusal(text: str) -> bool:
    """Whether `text` says the sources do not cover the question (or that it cannot say)."""
    return bool(_REFUSAL.search(text))


def repeated_sentence(text: str) -> str | None:
    """The first sentence or list item of `text` said twice (or with a word changed)."""
    seen: list[frozenset[str]] = []
    keys: set[str] = set()
    for sentence in split_sentences(text):
        words = _words(sentence)
        if len(words) < REPEAT_MIN_WORDS:
            continue
        if _repeats(words, seen, keys):
            return sentence
        seen.append(frozenset(words))
        keys.add(" ".join(words))
    return None


def _loops(words: list[str]) -> bool:
    """Whether the words end in a phrase of up to LOOP_PHRASE_WORDS said LOOP_TIMES times
    over, back to back."""
    for size in range(1, LOOP_PHRASE_WORDS + 1):
        tail = words[-size * LOOP_TIMES :]
        if len(tail) == size * LOOP_TIMES and all(
            tail[i] == tail[i % size] for i in range(len(tail))
        ):
            return True
    return False


def _repeats(words: list[str], seen: list[frozenset[str]], keys: set[str]) -> bool:
    if " ".join(words) in keys:
        return True
    if len(words) < NEAR_REPEAT_MIN_WORDS:
        return False
    current = frozenset(words)
    return any(len(current & other) / len(current | other) >= NEAR_REPEAT_OVERLAP for other in seen)


def _cell_words(row: str) -> list[str]:
    cells = row.strip().strip("|").split("|")
    return [w for cell in cells[1:] for w in _words(cell) if w not in STOP_WORDS and len(w) > 2]


def _words(sentence: str) -> list[str]:
    bare = _CITATION_MARK.sub(" ", _LIST_MARKER.sub("", sentence))
    return _WORD.findall(bare.casefold())
