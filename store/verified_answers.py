"""Verified answers in SQL: saved from resolutions, reused, kept current, reviewed.

The SQL row is the record; the policy store holds a searchable copy of each active one
(retrieval/verified.py), added and removed as its status changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.errors import NotOnRecord
from store.models import VerifiedAnswer, VerifiedAnswerStatus
from store.types import utcnow


class VerifiedAnswerNotFound(NotOnRecord):
    """No verified answer has that id."""


@dataclass(frozen=True)
class PolicyRef:
    """A policy version a verified answer rests on."""

    doc_id: str
    version: int
    title: str

    def to_json(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "version": self.version, "title": self.title}

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> PolicyRef:
        return cls(str(fields["doc_id"]), int(fields["version"]), str(fields.get("title", "")))


def save(
    session: Session,
    *,
    question: str,
    answer: str,
    author: str,
    audience: str,
    policy_refs: Sequence[PolicyRef],
    escalation_id: int | None = None,
    expires_on: date | None = None,
) -> VerifiedAnswer:
    verified = VerifiedAnswer(
        question=question,
        answer=answer,
        author=author,
        audience=audience,
        policy_refs=[ref.to_json() for ref in policy_refs],
        escalation_id=escalation_id,
        expires_on=expires_on,
        status=VerifiedAnswerStatus.ACTIVE,
        reviewed_at=utcnow(),
        reviewed_by=author,
    )
    session.add(verified)
    session.flush()
    return verified


def get(session: Session, verified_id: int) -> VerifiedAnswer:
    verified = session.get(VerifiedAnswer, verified_id)
    if verified is None:
        raise VerifiedAnswerNotFound(
            f"no verified answer #{verified_id}; see `dispatchbot verified list`"
        )
    return verified


def listed(session: Session, status: VerifiedAnswerStatus | None = None) -> list[VerifiedAnswer]:
    query = select(VerifiedAnswer).order_by(VerifiedAnswer.id)
    if status is not None:
        query = query.where(VerifiedAnswer.status == status)
    return list(session.scalars(query))


def approve(session: Session, verified_id: int, reviewer: str) -> VerifiedAnswer:
    """Back in service: it was checked against the policy in force today."""
    verified = get(session, verified_id)
    verified.status = VerifiedAnswerStatus.ACTIVE
    verified.status_reason = None
    verified.reviewed_at = utcnow()
    verified.reviewed_by = reviewer
    return verified


def retire(session: Session, verified_id: int, reviewer: str, reason: str) -> VerifiedAnswer:
    verified = get(session, verified_id)
    verified.status = VerifiedAnswerStatus.RETIRED
    verified.status_reason = reason
    verified.reviewed_at = utcnow()
    verified.reviewed_by = reviewer
    return verified


def cited_documents(session: Session) -> set[str]:
    """The doc_ids the active verified answers rest on."""
    return {
        PolicyRef.from_json(ref).doc_id
        for verified in listed(session, VerifiedAnswerStatus.ACTIVE)
        for ref in verified.policy_refs
    }


def mark_stale(
    session: Session, current: dict[str, tuple[int, str]], retired_docs: Iterable[str] = ()
) -> list[VerifiedAnswer]:
    """Active answers citing a document whose version moved on, or that was retired.

    `current`: case-folded doc_id -> (version now stored last, title); `retired_docs`:
    case-folded doc_ids that no longer exist. Returns the answers made stale.
    """
    gone = set(retired_docs)
    staled: list[VerifiedAnswer] = []
    for verified in listed(session, VerifiedAnswerStatus.ACTIVE):
        for ref in map(PolicyRef.from_json, verified.policy_refs):
            key = ref.doc_id.casefold()
            if key in gone:
                reason = f"{ref.title or ref.doc_id} was retired"
            elif key in current and current[key][0] != ref.version:
                now, title = current[key]
                reason = f"{title or ref.doc_id} v{ref.version} is no longer current (now v{now})"
            else:
                continue
            verified.status = VerifiedAnswerStatus.STALE
            verified.status_reason = reason
            staled.append(verified)
            break
    return staled


def record_reuse(session: Session, verified_id: int, when: datetime | None = None) -> None:
    session.execute(
        update(VerifiedAnswer)
        .where(VerifiedAnswer.id == verified_id)
        .values(reuse_count=VerifiedAnswer.reuse_count + 1, last_reused_at=when or utcnow())
    )


def most_reused(session: Session, limit: int = 5) -> list[VerifiedAnswer]:
    query = (
        select(VerifiedAnswer)
        .where(VerifiedAnswer.status == VerifiedAnswerStatus.ACTIVE)
        .where(VerifiedAnswer.reuse_count > 0)
        .order_by(VerifiedAnswer.reuse_count.desc(), VerifiedAnswer.id)
        .limit(limit)
    )
    return list(session.scalars(query))
