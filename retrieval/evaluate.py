"""Retrieval quality on a labelled set: recall@1, recall@5 and MRR for each search mode.

A labelled question names the document and the heading of the section that answers it. A
result is a hit when it comes from that document and the heading is on its section path
(the labelled section itself, or a subsection of it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from retrieval.documents import SECTION_SEPARATOR
from retrieval.errors import RetrievalError
from retrieval.search import PolicySearch, SearchMode, SearchResult


class LabelledQuestion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    question: str
    doc_id: str
    section: str


@dataclass(frozen=True)
class Miss:
    """A question whose answer was not in the top `k`, with what came first instead."""

    question: str
    doc_id: str
    section: str
    top_doc_id: str | None
    top_section: str | None


@dataclass(frozen=True)
class ModeScores:
    mode: SearchMode
    questions: int
    recall_at_1: float
    recall_at_5: float
    mrr: float
    misses: tuple[Miss, ...]  # answer not in the top k


def read_labelled_set(path: Path) -> list[LabelledQuestion]:
    """Questions from a JSON Lines file; a bad line is reported with its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise RetrievalError(f"cannot read the labelled set {path}: {error.strerror}") from error
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            questions.append(LabelledQuestion.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as error:
            raise RetrievalError(
                f"{path}:{number}: expected a JSON object with question, doc_id and section"
            ) from error
    if not questions:
        raise RetrievalError(f"{path} has no questions")
    return questions


def is_hit(result: SearchResult, question: LabelledQuestion) -> bool:
    if result.doc_id != question.doc_id:
        return False
    wanted = question.section.strip().casefold()
    return any(
        part.strip().casefold() == wanted for part in result.section.split(SECTION_SEPARATOR)
    )


def evaluate_retrieval(
    search: PolicySearch,
    questions: list[LabelledQuestion],
    modes: Iterable[SearchMode] = tuple(SearchMode),
    k: int = 10,
    as_of: date | None = None,
) -> list[ModeScores]:
    """Score each mode on `questions`; MRR counts ranks up to `k` (at least 5)."""
    depth = max(k, 5)
    scores = []
    for mode in modes:
        ranks: list[int | None] = []
        misses: list[Miss] = []
        for question in questions:
            results = search.search(question.question, k=depth, mode=mode, as_of=as_of)
            rank = next(
                (n for n, result in enumerate(results, start=1) if is_hit(result, question)), None
            )
            ranks.append(rank)
            if rank is None:
                top = results[0] if results else None
                misses.append(
                    Miss(
                        question=question.question,
                        doc_id=question.doc_id,
                        section=question.section,
                        top_doc_id=top.doc_id if top else None,
                        top_section=top.section if top else None,
                    )
                )
        count = len(questions)
        scores.append(
            ModeScores(
                mode=mode,
                questions=count,
                recall_at_1=sum(1 for rank in ranks if rank == 1) / count,
                recall_at_5=sum(1 for rank in ranks if rank is not None and rank <= 5) / count,
                mrr=sum(1 / rank for rank in ranks if rank is not None) / count,
                misses=tuple(misses),
            )
        )
    return scores
