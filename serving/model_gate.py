"""The promotion gate: is a candidate's own text better than the incumbent's, question by question?

Both versions answer the same labelled questions with greedy decoding, so every question gives
a pair of outcomes, and the gate compares pairs, not totals. Each measure is a yes/no per
question, read from the model's text before verification (what training changes):

- facts present (covered questions): the text holds every expected fact. Must be better.
- unsupported claim (every question): a number, amount, contact, time or date that is in
  neither the question nor the sources. Must be no worse.
- repetition (every question): a sentence said twice. Must be no worse.
- uncovered answered (uncovered questions): the text does not refuse. Must be no worse.

The test is the exact one-sided McNemar test, which for paired yes/no outcomes is the sign
test on the discordant pairs: only questions where the two versions differ say anything
about which is better, and if neither were, each of those `n` questions would favour either
one with probability 1/2. The chance of the candidate winning `k` or more of them by luck
is the binomial tail P(X >= k | n, 1/2), computed exactly. It was chosen over a paired
bootstrap because every outcome here is binary: McNemar is exact where a bootstrap only
approximates the same tail (and is too generous with a handful of discordant pairs, which
is what 106 questions give), and it needs no seed or resampling, so the same answers always
give the same verdict and the margin can be stated in questions.

"Better" means that tail is at most 5% (ALPHA): a real gain, not a lucky split. With no
losses that takes 5 gained questions (1/32 = 0.031), with one loss 7, with two 9; 4 to 0
is not enough (1/16). The margin therefore grows with the set's size only through the
questions that differ, which is what a paired comparison should measure.

"No worse" uses the same test the other way round: a measure fails when the candidate's
extra failures are beyond chance at the same 5% (it loses 5 to 0, 7 to 1, ...). Failures
that trade places within chance (2 new unsupported claims, 1 gone) do not fail a good
adapter; a consistent regression does. Using one test and one level on both sides keeps the
rule one rule: a difference counts when it is real, whichever way it goes.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from math import comb
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, computed_field

from store.errors import BadInput

if TYPE_CHECKING:
    from serving.answer_quality import AnswerScore

ALPHA = 0.05
TEST = "exact one-sided McNemar test (sign test on the discordant pairs)"

# Citations as the prompt numbers the sources: [1], [2], ...
CITATION = re.compile(r"\[(\d{1,3})\]")
# Openings that delay the answer; the voice starts with the action or the answer.
PREAMBLE = re.compile(
    r"^\s*(sure|certainly|of course|great question|hello|hi|hey|thanks|thank you|"
    r"as an ai|as a|i'?m happy|i would be happy|absolutely|well|okay|ok)\b",
    re.IGNORECASE,
)


class PairingError(BadInput):
    """The two versions' answers are not to the same questions in the same order."""


class Measure(StrEnum):
    FACTS_PRESENT = "facts_present"
    UNSUPPORTED = "unsupported"
    REPEATING = "repeating"
    UNCOVERED_ANSWERED = "uncovered_answered"


class Requirement(StrEnum):
    BETTER = "better"
    NO_WORSE = "no_worse"


class VersionScores(BaseModel):
    """One version's figures on its own text (before verification) over the labelled set."""

    model_config = ConfigDict(frozen=True)

    questions: int
    covered: int
    uncovered: int
    facts_present: float  # covered questions whose text holds every expected fact
    unsupported: int  # answers with at least one unsupported claim
    repeating: int  # answers saying a sentence twice
    uncovered_refused: float  # uncovered questions refused
    covered_refused: float  # covered questions refused (or never sent to the model)
    citing: float  # covered questions the model wrote for that cite a source, [n]
    words: float  # mean words of the texts it wrote
    to_the_point: float  # texts it wrote that open with the answer, not a pleasantry
    median_seconds: float  # from the question to the final text
    p95_seconds: float


class PairedComparison(BaseModel):
    """One measure over the paired questions, and the test that decided it."""

    model_config = ConfigDict(frozen=True)

    measure: Measure
    requirement: Requirement
    pairs: int  # questions both versions were scored on for this measure
    candidate_better: int  # questions only the candidate gets right
    candidate_worse: int  # questions only the incumbent gets right
    p_value: float  # one-sided: of the gain (better) or of the loss (no_worse) being luck
    # The split of these discordant pairs that counts as real: the gains a "better" needs,
    # or the losses that fail a "no worse". None: no split of so few pairs is beyond chance.
    needed: int | None
    passed: bool

    # mypy does not take a decorator over a property; pydantic documents this stacking.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def margin(self) -> int:
        """Questions gained, net: positive favours the candidate."""
        return self.candidate_better - self.candidate_worse


class GateResult(BaseModel):
    """The verdict, the reasons it failed (none when it passed) and the statistics used."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    reasons: list[str]
    test: str = TEST
    alpha: float = ALPHA
    questions: int
    comparisons: list[PairedComparison]

    def comparison(self, measure: Measure) -> PairedComparison:
        return next(c for c in self.comparisons if c.measure is measure)

    @classmethod
    def stored_on(cls, metrics: Mapping[str, Any] | None) -> GateResult | None:
        """The verdict stored on a model version (`metrics["evaluation"]["gate"]`); None when
        it was never judged, or judged by a gate of another shape (judge it again)."""
        stored = ((metrics or {}).get("evaluation") or {}).get("gate")
        if not isinstance(stored, Mapping):
            return None
        try:
            return cls.model_validate(stored)
        except ValidationError:
            return None


def judge(
    candidate: Sequence[AnswerScore], incumbent: Sequence[AnswerScore], *, alpha: float = ALPHA
) -> GateResult:
    """Pass the candidate when its facts present are better beyond chance and it is no worse,
    beyond chance, on unsupported claims, repetition and answering uncovered questions."""
    _require_pairs(candidate, incumbent)
    pairs = list(zip(candidate, incumbent, strict=True))
    covered = [(ours, theirs) for ours, theirs in pairs if ours.covered]
    uncovered = [(ours, theirs) for ours, theirs in pairs if not ours.covered]
    comparisons = [
        _compare(
            Measure.FACTS_PRESENT, Requirement.BETTER, covered, lambda s: s.model.all_facts, alpha
        ),
        _compare(
            Measure.UNSUPPORTED,
            Requirement.NO_WORSE,
            pairs,
            lambda s: not s.model.unsupported,
            alpha,
        ),
        _compare(
            Measure.REPEATING,
            Requirement.NO_WORSE,
            pairs,
            lambda s: s.model.repeated is None,
            alpha,
        ),
        _compare(
            Measure.UNCOVERED_ANSWERED,
            Requirement.NO_WORSE,
            uncovered,
            lambda s: s.model.refused,
            alpha,
        ),
    ]
    reasons = [_reason(c, alpha) for c in comparisons if not c.passed]
    return GateResult(
        passed=not reasons,
        reasons=reasons,
        alpha=alpha,
        questions=len(pairs),
        comparisons=comparisons,
    )


def version_scores(answers: Sequence[AnswerScore]) -> VersionScores:
    """The figures of one version's own text, as the gate and the side-by-side table read them."""
    covered = [a for a in answers if a.covered]
    uncovered = [a for a in answers if not a.covered]
    written = [a for a in answers if a.generated.strip()]
    covered_written = [a for a in written if a.covered]
    seconds = sorted(a.seconds for a in answers)
    return VersionScores(
        questions=len(answers),
        covered=len(covered),
        uncovered=len(uncovered),
        facts_present=_share(a.model.all_facts for a in covered),
        unsupported=sum(bool(a.model.unsupported) for a in answers),
        repeating=sum(a.model.repeated is not None for a in answers),
        uncovered_refused=_share(a.model.refused for a in uncovered),
        covered_refused=_share(a.model.refused for a in covered),
        citing=_share(bool(CITATION.search(a.generated)) for a in covered_written),
        words=statistics.fmean(len(a.generated.split()) for a in written) if written else 0.0,
        to_the_point=_share(not PREAMBLE.match(a.generated) for a in written),
        median_seconds=statistics.median(seconds) if seconds else 0.0,
        p95_seconds=seconds[min(len(seconds) - 1, int(len(seconds) * 0.95))] if seconds else 0.0,
    )


def tail(wins: int, pairs: int) -> float:
    """P(X >= wins) for X ~ Binomial(pairs, 1/2): the chance of that split, or a wider one,
    when neither version is better."""
    return sum(comb(pairs, k) for k in range(max(wins, 0), pairs + 1)) / 2**pairs


def needed_wins(pairs: int, alpha: float = ALPHA) -> int | None:
    """The fewest of `pairs` discordant questions one side must take to be beyond chance."""
    return next((k for k in range(pairs + 1) if tail(k, pairs) <= alpha), None)


def _compare(
    measure: Measure,
    requirement: Requirement,
    pairs: Sequence[tuple[AnswerScore, AnswerScore]],
    good: Callable[[AnswerScore], bool],
    alpha: float,
) -> PairedComparison:
    better = sum(good(ours) and not good(theirs) for ours, theirs in pairs)
    worse = sum(good(theirs) and not good(ours) for ours, theirs in pairs)
    discordant = better + worse
    if requirement is Requirement.BETTER:
        p_value = tail(better, discordant)
        passed = p_value <= alpha
    else:
        p_value = tail(worse, discordant)
        passed = p_value > alpha
    return PairedComparison(
        measure=measure,
        requirement=requirement,
        pairs=len(pairs),
        candidate_better=better,
        candidate_worse=worse,
        p_value=p_value,
        needed=needed_wins(discordant, alpha),
        passed=passed,
    )


_FAILED = {
    Measure.FACTS_PRESENT: "expected facts in the model's text are not better beyond chance",
    Measure.UNSUPPORTED: "more answers with unsupported claims, beyond chance",
    Measure.REPEATING: "more answers repeating a sentence, beyond chance",
    Measure.UNCOVERED_ANSWERED: "answers more uncovered questions instead of refusing, "
    "beyond chance",
}


def _reason(comparison: PairedComparison, alpha: float) -> str:
    better, worse = comparison.candidate_better, comparison.candidate_worse
    split = f"{better} questions better, {worse} worse, p = {comparison.p_value:.3f}"
    if comparison.requirement is Requirement.NO_WORSE:
        return f"{_FAILED[comparison.measure]} ({split}; fails at p <= {alpha:g})"
    if comparison.needed is None:
        need = f"{better + worse} questions differ: too few for any split to count"
    else:
        need = f"needs {comparison.needed} of the {better + worse} that differ"
    return f"{_FAILED[comparison.measure]} ({split}; {need})"


def _require_pairs(candidate: Sequence[AnswerScore], incumbent: Sequence[AnswerScore]) -> None:
    ours, theirs = [a.id for a in candidate], [a.id for a in incumbent]
    if not ours:
        raise PairingError("no answers to judge: answer the labelled set with both versions")
    if ours != theirs:
        where = next(
            (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
            min(len(ours), len(theirs)),
        )
        raise PairingError(
            f"the two versions answered different questions ({len(ours)} and {len(theirs)}; "
            f"first difference at #{where + 1}: {_at(ours, where)} vs {_at(theirs, where)}); "
            "answer the same labelled questions, in the same order, with both"
        )


def _at(ids: Sequence[str], index: int) -> str:
    return repr(ids[index]) if index < len(ids) else "nothing"


def _share(flags: Iterable[bool]) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else 0.0
