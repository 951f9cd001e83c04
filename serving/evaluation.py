"""Judging a model version against another on the labelled questions: what each version is
asked with, who really answered, the measures reported beside the gate, and what is stored.

The gate itself is in model_gate.py. Both versions answer greedily through the whole
answering path, each with a client that always asks that one version, so the comparison is
paired and repeatable. Beside the gate's measures, on the same texts: citation validity
(every [n] points at a source the model was given) and, when a dataset export is given,
ROUGE-L against the approved answers of its held-out rows. They are reported, not gated: a
135M model's wording overlap with one approved answer says little about being right.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from serving.answer_quality import AnswerQualityReport, prompt_support
from serving.assistant import NO_GENERATION, AssistantAnswer
from serving.claims import SupportIndex
from serving.llm_client import GenerationResult, ModelClient, ModelError
from serving.model_gate import CITATION, GateResult, VersionScores, version_scores
from store.database import Database
from store.errors import BadInput
from store.models import Answer
from store.settings import Settings

BASE = "base"  # the base model, as the version to beat when none is promoted
# The same prompt always gets the same answer, and no route sends it to another adapter.
PINNED = {"llm_temperature": 0.0, "adapter_routes": {}}

_SOURCE_TAG = re.compile(r'<source id="\d+">')
_WORD = re.compile(r"[a-z0-9]+(?:[.,'][a-z0-9]+)*")

# (version, item) before each question or held-out row is answered.
EvaluationProgress = Callable[[str, str], None]


class EvaluationError(BadInput):
    """Judging cannot start; the message says what to change."""


class WrongVersionAnswered(ModelError):
    """The server answered with another model than the version being judged (it lost the
    adapter): the scores would belong to the wrong version."""


@dataclass(frozen=True)
class HeldoutItem:
    """A held-out SFT row of a dataset export: the prompt and the answer people approved."""

    id: str
    messages: list[dict[str, str]]
    reference: str


def heldout_items(dataset_dir: Path) -> list[HeldoutItem]:
    path = dataset_dir / "sft.heldout.jsonl"
    if not path.is_file():
        raise EvaluationError(f"{path} is missing; run `dispatchbot dataset export` first")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            messages = json.loads(line)["messages"]
            prompt, answer = messages[:-1], messages[-1]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise EvaluationError(
                f"{path}:{number} is not a held-out SFT row ({error}); export the dataset again"
            ) from error
        items.append(HeldoutItem(f"heldout-{number}", prompt, answer))
    return items


def pinned_client(settings: Settings, adapter: str | None) -> ModelClient:
    """A client that always asks `adapter` (None: the base model), greedily."""
    return ModelClient.from_settings(settings.model_copy(update=PINNED), lambda: adapter)


@dataclass(frozen=True)
class WrittenBy:
    """Who wrote one answer of the labelled set, and how many sources it was given."""

    adapter: str | None
    asked_model: bool
    sources: int


@dataclass
class AnswerLog:
    """`support_of` for `evaluate_answers`: what an answer's claims may come from, read from the
    prompt stored with it; notes who wrote each answer on the way, in the questions' order."""

    database: Database
    written: list[WrittenBy] = field(default_factory=list)

    def __call__(self, answer: AssistantAnswer) -> SupportIndex:
        with self.database.transaction() as session:
            prompt = session.get_one(Answer, answer.answer_id).prompt
        messages = json.loads(prompt) if prompt else []
        sources = len(_SOURCE_TAG.findall(messages[-1]["content"])) if messages else 0
        asked = answer.model != NO_GENERATION
        self.written.append(WrittenBy(answer.adapter, asked, sources))
        return prompt_support(prompt)

    def require(self, adapter: str | None) -> None:
        """Every answer the model wrote came from `adapter`."""
        others = {w.adapter for w in self.written if w.asked_model} - {adapter}
        if others:
            raise _wrong_version(adapter, others)


class VersionReport(BaseModel):
    """One version's figures: the gate's, and the measures reported beside them."""

    model_config = ConfigDict(frozen=True)

    name: str  # the version's name, or "base"
    scores: VersionScores
    citation_validity: float  # texts it wrote whose every [n] is a source it was given
    rouge_l: float | None  # mean ROUGE-L F1 against the held-out approved answers
    heldout: int  # held-out rows answered for ROUGE-L


@dataclass(frozen=True)
class ModelJudgement:
    """Both versions' reports and the verdict; `stored()` is what the version keeps."""

    candidate: VersionReport
    incumbent: VersionReport
    gate: GateResult
    candidate_answers: AnswerQualityReport
    incumbent_answers: AnswerQualityReport
    evaluated_at: datetime

    def stored(self) -> dict[str, Any]:
        """`model_versions.metrics["evaluation"]`; `GateResult.stored_on` reads the gate back."""
        return {
            "gate": self.gate.model_dump(mode="json"),
            "candidate": self.candidate.model_dump(mode="json"),
            "incumbent": self.incumbent.model_dump(mode="json"),
            "evaluated_at": self.evaluated_at.isoformat(),
        }

    def to_json(self) -> dict[str, Any]:
        """The stored figures and every answer of both versions."""
        return self.stored() | {
            "answers": {
                "candidate": [asdict(a) for a in self.candidate_answers.answers],
                "incumbent": [asdict(a) for a in self.incumbent_answers.answers],
            }
        }


def version_report(
    name: str,
    answers: AnswerQualityReport,
    log: AnswerLog,
    heldout: Sequence[tuple[HeldoutItem, str]] = (),
) -> VersionReport:
    """`heldout`: each held-out row with the version's answer to it."""
    written = [
        (score.generated, by.sources)
        for score, by in zip(answers.answers, log.written, strict=True)
        if score.generated.strip()
    ]
    return VersionReport(
        name=name,
        scores=version_scores(answers.answers),
        citation_validity=(
            sum(valid_citations(text, sources) for text, sources in written) / len(written)
            if written
            else 1.0
        ),
        rouge_l=(
            statistics.fmean(rouge_l(text, item.reference) for item, text in heldout)
            if heldout
            else None
        ),
        heldout=len(heldout),
    )


def answer_heldout(
    client: ModelClient,
    adapter: str | None,
    items: Sequence[HeldoutItem],
    progress: Callable[[str], None] | None = None,
) -> list[tuple[HeldoutItem, str]]:
    """Each held-out prompt answered as it was exported, by `adapter` only."""
    answered = []
    for item in items:
        if progress is not None:
            progress(item.id)
        result: GenerationResult = client.complete(item.messages)
        if result.adapter != adapter:
            raise _wrong_version(adapter, {result.adapter})
        answered.append((item, result.text))
    return answered


def valid_citations(text: str, source_count: int) -> bool:
    return all(1 <= int(number) <= source_count for number in CITATION.findall(text))


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


def _wrong_version(adapter: str | None, others: set[str | None]) -> WrongVersionAnswered:
    expected = adapter or "the base model"
    got = ", ".join(sorted(other or "the base model" for other in others))
    return WrongVersionAnswered(
        f"{got} answered instead of {expected}: the model server no longer serves the adapter. "
        "Run the evaluation again (it loads the adapter first)."
    )
