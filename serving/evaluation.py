"""Evaluating a model version against another on the same prompts, and the promotion gate.

Three kinds of item: held-out questions with a reference answer (from a dataset export),
answerable questions from examples/eval (no reference), and questions the policies do not
cover (the answer should refuse). Scores favour what a 135M model can be held to and a user
notices: citations that point at real sources, refusing when the sources do not cover the
question, overlap with the reference answer (ROUGE-L), getting to the point, and latency.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from serving.llm_client import ModelClient
from serving.prompts import PromptSource, build_prompt
from serving.verification import is_refusal

_CITATION = re.compile(r"\[(\d{1,3})\]")
_SOURCE_TAG = re.compile(r'<source id="\d+">')
_WORD = re.compile(r"[a-z0-9]+(?:[.,'][a-z0-9]+)*")
# Openings that delay the answer; the voice starts with the action or the answer.
_PREAMBLE = re.compile(
    r"^\s*(sure|certainly|of course|great question|hello|hi|hey|thanks|thank you|"
    r"as an ai|as a|i'?m happy|i would be happy|absolutely|well|okay|ok)\b",
    re.IGNORECASE,
)


class ItemKind(StrEnum):
    REFERENCE = "reference"  # held-out question with the answer people approved
    ANSWERABLE = "answerable"  # covered by the policies, no reference answer
    UNANSWERABLE = "unanswerable"  # the policies do not cover it: the answer should refuse


@dataclass(frozen=True)
class EvalItem:
    kind: ItemKind
    messages: list[dict[str, str]]  # the prompt, as the model sees it
    source_count: int
    reference: str | None = None


@dataclass(frozen=True)
class ModelScores:
    model: str
    items: int
    citation_validity: float  # answers whose every [n] points at a source they were given
    citing: float | None  # answers to covered questions that cite at least one source
    refusal: float | None  # uncovered questions answered with a refusal
    rouge_l: float | None  # mean ROUGE-L F1 against the reference answers
    words: float  # mean answer length in words
    to_the_point: float  # answers that open with the answer, not a pleasantry
    median_latency_ms: float
    p95_latency_ms: float


@dataclass(frozen=True)
class Gate:
    passed: bool
    reasons: list[str] = field(default_factory=list)


def heldout_items(dataset_dir: Path) -> list[EvalItem]:
    """The held-out SFT rows of an export: the prompt, and the approved answer as reference."""
    path = dataset_dir / "sft.heldout.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run `dispatchbot dataset export` first")
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        messages = json.loads(line)["messages"]
        prompt, answer = messages[:-1], messages[-1]["content"]
        items.append(
            EvalItem(
                ItemKind.REFERENCE, prompt, len(_SOURCE_TAG.findall(prompt[-1]["content"])), answer
            )
        )
    return items


def question_items(
    questions: Iterable[str],
    kind: ItemKind,
    search: Callable[[str], Sequence[PromptSource]],
    *,
    context_tokens: int,
    reserved_for_answer: int,
) -> list[EvalItem]:
    """Prompts built the way the assistant builds them, from today's retrieval."""
    items = []
    for question in questions:
        prompt = build_prompt(
            question,
            search(question),
            context_tokens=context_tokens,
            reserved_for_answer=reserved_for_answer,
        )
        items.append(EvalItem(kind, prompt.messages, len(prompt.sources)))
    return items


def evaluate_model(
    client: ModelClient, model: str | None, items: Sequence[EvalItem]
) -> ModelScores:
    """Answer every item with `model` (None: the base model) and score the answers."""
    answers: list[tuple[EvalItem, str, float]] = []
    for item in items:
        result = client.complete(item.messages, model=model)
        answers.append((item, result.text, result.latency_ms))
    return score(model or client.router.base_model, answers)


def score(model: str, answers: Sequence[tuple[EvalItem, str, float]]) -> ModelScores:
    covered = [(i, text) for i, text, _ in answers if i.kind is not ItemKind.UNANSWERABLE]
    uncovered = [text for i, text, _ in answers if i.kind is ItemKind.UNANSWERABLE]
    references = [(text, i.reference) for i, text, _ in answers if i.reference]
    latencies = sorted(latency for _, _, latency in answers)
    return ModelScores(
        model=model,
        items=len(answers),
        citation_validity=_share(valid_citations(text, i.source_count) for i, text, _ in answers),
        citing=_share(bool(_CITATION.search(text)) for _, text in covered) if covered else None,
        refusal=_share(is_refusal(text) for text in uncovered) if uncovered else None,
        rouge_l=(
            statistics.fmean(rouge_l(text, ref) for text, ref in references) if references else None
        ),
        words=statistics.fmean(len(text.split()) for _, text, _ in answers) if answers else 0.0,
        to_the_point=_share(not _PREAMBLE.match(text) for _, text, _ in answers),
        median_latency_ms=statistics.median(latencies) if latencies else 0.0,
        p95_latency_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
        if latencies
        else 0.0,
    )


def gate(candidate: ModelScores, against: ModelScores) -> Gate:
    """Promote only if not worse on safety (citations, refusals) and better on the reference."""
    reasons = []
    if candidate.citation_validity < against.citation_validity:
        reasons.append(
            f"citation validity fell: {candidate.citation_validity:.2f} < "
            f"{against.citation_validity:.2f}"
        )
    if (candidate.refusal or 0.0) < (against.refusal or 0.0):
        reasons.append(f"refuses less: {candidate.refusal:.2f} < {against.refusal or 0.0:.2f}")
    if candidate.rouge_l is None or against.rouge_l is None:
        reasons.append("no held-out reference answers to compare (export a dataset with --data)")
    elif candidate.rouge_l <= against.rouge_l:
        reasons.append(
            f"no closer to the reference answers: ROUGE-L {candidate.rouge_l:.3f} <= "
            f"{against.rouge_l:.3f}"
        )
    return Gate(passed=not reasons, reasons=reasons)


def valid_citations(text: str, source_count: int) -> bool:
    return all(1 <= int(number) <= source_count for number in _CITATION.findall(text))


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased words: the longest common subsequence, both ways."""
    ours, theirs = _WORD.findall(candidate.lower()), _WORD.findall(reference.lower())
    if not ours or not theirs:
        return 0.0
    previous = [0] * (len(theirs) + 1)
    for word in ours:
        current = [0]
        for j, other in enumerate(theirs, 1):
            current.append(previous[j - 1] + 1 if word == other else max(previous[j], current[-1]))
        previous = current
    common = previous[-1]
    if common == 0:
        return 0.0
    precision, recall = common / len(ours), common / len(theirs)
    return 2 * precision * recall / (precision + recall)


def scores_json(scores: ModelScores) -> dict[str, Any]:
    return asdict(scores)


def _share(flags: Iterable[bool]) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else 0.0
