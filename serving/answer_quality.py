"""Answer quality as numbers: the whole answering path run over a labelled set of questions.

Each labelled question names the facts a correct answer states (with accepted variants),
or says the policies do not cover it. Every answer is scored twice: as the person sees it
(the text shown and the policy's own words under it) and as the model wrote it, before
verification (what the learning loop must improve). Measured per answer: the expected
facts present; unsupported claims (a number, amount, contact, time or date in neither the
question nor what the model was given); a sentence said twice; a covered question refused;
an uncovered question answered; and the time from the question to the final text.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from itertools import zip_longest
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serving.assistant import (
    NOT_COVERED,
    NOTHING_WRITTEN,
    Assistant,
    AssistantAnswer,
    ThreadKey,
)
from serving.claims import SupportIndex, contains_fact, unsupported_claims
from serving.guard import PROMPT_WITHHELD
from serving.verification import is_refusal, repeated_sentence
from store.errors import BadInput

EVALUATION_TEAM = "evaluation"
# Replies that carry no policy at all: to a covered question they are a refusal.
NO_ANSWER_REPLIES = frozenset({NOT_COVERED, NOTHING_WRITTEN, PROMPT_WITHHELD})


class QuestionKind(StrEnum):
    TABLE = "table"  # a lookup in a policy table, often a number inside a range row
    PROCEDURE = "procedure"  # what to do, in steps
    LOOKALIKE = "lookalike"  # the answer sits in one of two similar policies
    VERSIONED = "versioned"  # an older or future version says otherwise
    FOLLOWUP = "followup"  # only makes sense after the thread's earlier question
    FACT = "fact"
    UNCOVERED = "uncovered"  # the policies do not say


class LabelledQuestion(BaseModel):
    """One line of the labelled set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    kind: QuestionKind
    question: str = Field(min_length=1)
    thread: tuple[str, ...] = ()  # earlier questions of the same thread, oldest first
    doc_id: str | None = None
    section: str | None = None
    facts: tuple[tuple[str, ...], ...] = ()  # each fact: its accepted variants

    @property
    def covered(self) -> bool:
        return self.kind is not QuestionKind.UNCOVERED

    @model_validator(mode="after")
    def _labels_fit_the_kind(self) -> LabelledQuestion:
        if self.covered and not (self.doc_id and self.section and self.facts):
            raise ValueError("a covered question needs doc_id, section and facts")
        if not self.covered and (self.doc_id or self.facts):
            raise ValueError("an uncovered question has no doc_id or facts")
        if any(not variants for variants in self.facts):
            raise ValueError("every fact needs at least one variant")
        return self


class LabelledSetError(BadInput):
    """The labelled set cannot be read; the message names the line and what is wrong."""


def read_labelled_questions(path: Path) -> list[LabelledQuestion]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise LabelledSetError(f"cannot read {path}: {error.strerror or error}") from error
    questions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            questions.append(LabelledQuestion.model_validate_json(line))
        except ValidationError as error:
            problem = "; ".join(e["msg"] for e in error.errors())
            raise LabelledSetError(f"{path}:{number}: {problem}") from error
    if not questions:
        raise LabelledSetError(f"{path} holds no questions")
    return questions


def spread(questions: Sequence[LabelledQuestion], count: int | None) -> list[LabelledQuestion]:
    """The first `count` questions taking each kind in turn, so a short run covers them all."""
    if count is None or count >= len(questions):
        return list(questions)
    by_kind: dict[QuestionKind, list[LabelledQuestion]] = {}
    for question in questions:
        by_kind.setdefault(question.kind, []).append(question)
    interleaved = [
        question
        for round_ in zip_longest(*by_kind.values())
        for question in round_
        if question is not None
    ]
    return interleaved[:count]


@dataclass(frozen=True)
class TextScore:
    """One text (as shown, or as the model wrote it) against the labels."""

    facts_found: int
    facts_expected: int
    unsupported: tuple[str, ...]
    repeated: str | None
    refused: bool

    @property
    def all_facts(self) -> bool:
        return self.facts_found == self.facts_expected


@dataclass(frozen=True)
class AnswerScore:
    id: str
    kind: QuestionKind
    covered: bool
    shown: TextScore
    model: TextScore
    quote_has_facts: bool  # the policy's own words alone hold every expected fact
    verification: str
    seconds: float  # from the question to the final text
    answer: str  # the text shown (the quote follows it)
    quote: str
    generated: str  # the model's own text


@dataclass(frozen=True)
class Figures:
    """Shares over the answers of one view (shown, or model)."""

    facts_present: float  # covered questions whose answer holds every expected fact
    facts_recall: float  # expected facts found, over all covered questions' facts
    unsupported: int  # answers with at least one unsupported claim
    repeating: int  # answers saying a sentence twice
    covered_refused: float
    uncovered_answered: int


@dataclass(frozen=True)
class AnswerQualityReport:
    model: str
    adapter: str | None
    questions: int
    covered: int
    uncovered: int
    shown: Figures
    generated: Figures
    quote_facts_present: float
    verification: dict[str, int]
    median_seconds: float
    p95_seconds: float
    answers: list[AnswerScore] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_answers(
    assistant: Assistant,
    questions: Sequence[LabelledQuestion],
    *,
    support_of: Callable[[AssistantAnswer], SupportIndex],
    progress: Callable[[LabelledQuestion], None] | None = None,
) -> AnswerQualityReport:
    """Ask every question through `assistant` (each in a thread of its own, after its
    earlier questions) and score the answers. `support_of` gives the texts an answer's
    claims may come from: what the model was given."""
    scores: list[AnswerScore] = []
    answered: list[AssistantAnswer] = []
    for number, labelled in enumerate(questions):
        if progress is not None:
            progress(labelled)
        thread = ThreadKey(EVALUATION_TEAM, "eval", f"{number}.{labelled.id}")
        for earlier in labelled.thread:
            assistant.answer(earlier, thread=thread, user_id="evaluation")
        started = time.perf_counter()
        answer = assistant.answer(labelled.question, thread=thread, user_id="evaluation")
        seconds = time.perf_counter() - started
        answered.append(answer)
        scores.append(score_answer(labelled, answer, support_of(answer), seconds))
    return report(scores, answered)


def score_answer(
    labelled: LabelledQuestion, answer: AssistantAnswer, support: SupportIndex, seconds: float
) -> AnswerScore:
    quote = answer.quote.markdown if answer.quote else ""
    # The policy's words shown under a refusal are the closest found, offered, not an answer.
    shown_refused = answer.text in NO_ANSWER_REPLIES or is_refusal(answer.text)
    model_text = answer.generated_text
    return AnswerScore(
        id=labelled.id,
        kind=labelled.kind,
        covered=labelled.covered,
        # Facts and claims count in everything shown; repetition only in the answer's own
        # words (a table's rows may well look alike).
        shown=_score_text(labelled, answer.text, quote, support, shown_refused),
        model=_score_text(
            labelled, model_text, "", support, not model_text.strip() or is_refusal(model_text)
        ),
        quote_has_facts=bool(quote) and _facts_found(labelled, quote) == len(labelled.facts),
        verification=answer.verification.outcome.value,
        seconds=seconds,
        answer=answer.text,
        quote=quote,
        generated=model_text,
    )


def _score_text(
    labelled: LabelledQuestion, text: str, quote: str, support: SupportIndex, refused: bool
) -> TextScore:
    everything = f"{text}\n\n{quote}".strip()
    return TextScore(
        facts_found=_facts_found(labelled, everything),
        facts_expected=len(labelled.facts),
        unsupported=tuple(claim.text for claim in unsupported_claims(everything, support)),
        repeated=repeated_sentence(text),
        refused=refused,
    )


def _facts_found(labelled: LabelledQuestion, text: str) -> int:
    return sum(contains_fact(text, variants) for variants in labelled.facts)


def report(
    scores: Sequence[AnswerScore], answers: Sequence[AssistantAnswer]
) -> AnswerQualityReport:
    covered = [score for score in scores if score.covered]
    seconds = sorted(score.seconds for score in scores)
    generated = [answer for answer in answers if answer.generated_text]
    first = generated[0] if generated else (answers[0] if answers else None)
    outcomes: dict[str, int] = {}
    for score in scores:
        outcomes[score.verification] = outcomes.get(score.verification, 0) + 1
    return AnswerQualityReport(
        model=first.model if first else "",
        adapter=first.adapter if first else None,
        questions=len(scores),
        covered=len(covered),
        uncovered=len(scores) - len(covered),
        shown=_figures(scores, lambda score: score.shown),
        generated=_figures(scores, lambda score: score.model),
        quote_facts_present=_share(score.quote_has_facts for score in covered),
        verification=dict(sorted(outcomes.items())),
        median_seconds=statistics.median(seconds) if seconds else 0.0,
        p95_seconds=seconds[min(len(seconds) - 1, int(len(seconds) * 0.95))] if seconds else 0.0,
        answers=list(scores),
    )


def _figures(scores: Sequence[AnswerScore], view: Callable[[AnswerScore], TextScore]) -> Figures:
    covered = [view(score) for score in scores if score.covered]
    uncovered = [view(score) for score in scores if not score.covered]
    expected = sum(text.facts_expected for text in covered)
    return Figures(
        facts_present=_share(text.all_facts for text in covered),
        facts_recall=sum(text.facts_found for text in covered) / expected if expected else 0.0,
        unsupported=sum(bool(view(score).unsupported) for score in scores),
        repeating=sum(view(score).repeated is not None for score in scores),
        covered_refused=_share(text.refused for text in covered),
        uncovered_answered=sum(not text.refused for text in uncovered),
    )


def prompt_support(prompt: str) -> SupportIndex:
    """The support of an answer from its stored prompt: every user turn (the question, the
    thread's earlier questions, the sources); never the rules or earlier answers."""
    messages = json.loads(prompt) if prompt else []
    return SupportIndex(m["content"] for m in messages if m.get("role") == "user")


def _share(flags: Iterable[bool]) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else 0.0
