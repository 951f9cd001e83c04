"""People's verified answers in the policy store, as their own kind of source.

Each active verified answer is a point beside the policy chunks for each way of asking it
(the lines of its question): the dense vector is the embedding of that phrasing, the
keyword vector its terms, and the payload what an answer from it shows (the answer, who
wrote it and when, the policy versions it rests on). Policy searches leave these points
out (`Where.verified`); `find_verified` searches only them, within the reader's audiences.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from retrieval.embedding import Embedder
from retrieval.sparse import document_vector
from retrieval.store import VERIFIED_KIND, PolicyStore, StorePoint, Where, day_number

_POINT_NAMESPACE = uuid.UUID("2b7e4f0c-9a55-4c1e-8d0b-6f3e2a1c9d47")
# Verified answers have no start date: they answer from the day they are saved.
_ALWAYS = date(1970, 1, 1)
_PHRASINGS_PER_ANSWER = 8


@dataclass(frozen=True)
class VerifiedEntry:
    """What the store keeps of one verified answer."""

    verified_id: int
    question: str
    answer: str
    author: str
    created_at: datetime
    audience: str
    policy_refs: tuple[dict[str, Any], ...]
    expires_on: date | None = None

    @property
    def phrasings(self) -> tuple[str, ...]:
        """The ways of asking it that are matched: one per line of the question."""
        lines = (line.strip() for line in self.question.splitlines())
        return tuple(dict.fromkeys(line for line in lines if line)) or (self.question,)

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "kind": VERIFIED_KIND,
            "verified_id": self.verified_id,
            "question": self.question,
            "answer": self.answer,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
            "audience": self.audience,
            "policy_refs": list(self.policy_refs),
            "effective_from_day": day_number(_ALWAYS),
        }
        if self.expires_on is not None:
            payload["expires_on"] = self.expires_on.isoformat()
            payload["effective_to_day"] = day_number(self.expires_on)
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> VerifiedEntry:
        expires_on = payload.get("expires_on")
        return cls(
            verified_id=int(payload["verified_id"]),
            question=str(payload["question"]),
            answer=str(payload["answer"]),
            author=str(payload["author"]),
            created_at=datetime.fromisoformat(payload["created_at"]),
            audience=str(payload["audience"]),
            policy_refs=tuple(payload.get("policy_refs") or ()),
            expires_on=date.fromisoformat(expires_on) if expires_on else None,
        )


@dataclass(frozen=True)
class VerifiedMatch:
    entry: VerifiedEntry
    phrasing: str  # the way of asking it that came closest
    similarity: float  # cosine of the question's and that phrasing's embeddings


def index_verified(store: PolicyStore, embedder: Embedder, entry: VerifiedEntry) -> None:
    """Add (or replace) the searchable copy of one verified answer, a point a phrasing."""
    unindex_verified(store, entry.verified_id)  # phrasings since removed go too
    phrasings = entry.phrasings
    vectors = embedder.encode_documents(list(phrasings), batch_size=len(phrasings))
    store.upsert(
        [
            StorePoint(
                _point_id(entry.verified_id, number),
                vector,
                document_vector(phrasing),
                {**entry.payload(), "phrasing": phrasing},
            )
            for number, (phrasing, vector) in enumerate(zip(phrasings, vectors, strict=True))
        ]
    )


def unindex_verified(store: PolicyStore, verified_id: int) -> None:
    """Remove a verified answer from search (stale, retired)."""
    store.delete(Where(verified=True, verified_id=verified_id))


def find_verified(
    store: PolicyStore,
    question_vector: list[float],
    *,
    day: date,
    audiences: frozenset[str] | None,
    limit: int = 3,
) -> list[VerifiedMatch]:
    """The verified answers whose questions are closest to this one, closest first."""
    if audiences is not None and not audiences:
        return []
    where = Where.visible(day, audiences, verified=True)
    best: dict[int, VerifiedMatch] = {}
    # Several phrasings of one answer may come first: ask for enough to fill `limit`.
    for hit in store.nearest(question_vector, where, limit * _PHRASINGS_PER_ANSWER):
        entry = VerifiedEntry.from_payload(hit.payload)
        if entry.verified_id not in best:
            phrasing = str(hit.payload.get("phrasing", entry.question))
            best[entry.verified_id] = VerifiedMatch(entry, phrasing, hit.score)
    return list(best.values())[:limit]


def _point_id(verified_id: int, phrasing: int) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{verified_id}:{phrasing}"))
