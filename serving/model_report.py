"""How each model version does with users: answers, 👍/👎 and latency per adapter.

Every answer records the adapter that wrote it (or the base model), so versions compare
on the same questions they actually got.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from store.models import Answer, Feedback, ModelVersion

NO_MODEL = "none"  # answers that never reached a model ("not covered")


@dataclass(frozen=True)
class VersionReport:
    name: str
    status: str  # a model version's status, or "base" for the base model
    promoted_at: datetime | None
    canary_share: float | None
    answers: int
    thumbs_up: int
    thumbs_down: int
    median_latency_ms: float | None

    @property
    def thumbs_up_rate(self) -> float | None:
        votes = self.thumbs_up + self.thumbs_down
        return self.thumbs_up / votes if votes else None


def version_report(session: Session) -> list[VersionReport]:
    served = func.coalesce(Answer.adapter, Answer.model)
    up = func.sum(case((Feedback.value == 1, 1), else_=0))
    down = func.sum(case((Feedback.value == -1, 1), else_=0))
    votes = {
        name: (int(u or 0), int(d or 0))
        for name, u, d in session.execute(
            select(served, up, down)
            .join(Feedback, Feedback.answer_id == Answer.id)
            .where(Answer.model != NO_MODEL)
            .group_by(served)
        )
    }
    answers: dict[str, list[int]] = {}
    for name, latency in session.execute(
        select(served, Answer.latency_ms).where(Answer.model != NO_MODEL)
    ):
        answers.setdefault(name, []).append(latency)
    versions = {v.name: v for v in session.scalars(select(ModelVersion))}
    names = list(dict.fromkeys([*versions, *answers]))
    return [
        VersionReport(
            name=name,
            status=versions[name].status.value if name in versions else "base",
            promoted_at=versions[name].promoted_at if name in versions else None,
            canary_share=versions[name].canary_share if name in versions else None,
            answers=len(answers.get(name, [])),
            thumbs_up=votes.get(name, (0, 0))[0],
            thumbs_down=votes.get(name, (0, 0))[1],
            median_latency_ms=_median(answers.get(name, [])),
        )
        for name in names
    ]


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None
