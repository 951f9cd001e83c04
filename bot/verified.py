"""Verified answers kept in step in both places: the SQL record first, then the searchable
copy in the policy store. Used by the Home tab's buttons, the CLI and the running bot's
policy socket alike."""

from __future__ import annotations

import logging

from retrieval.embedding import Embedder
from retrieval.store import PolicyStore
from retrieval.verified import VerifiedEntry, index_verified, unindex_verified
from store import verified_answers
from store.database import Database
from store.models import VerifiedAnswer

logger = logging.getLogger(__name__)


def entry_of(row: VerifiedAnswer) -> VerifiedEntry:
    """The searchable copy of a verified answer's record."""
    return VerifiedEntry(
        verified_id=row.id,
        question=row.question,
        answer=row.answer,
        author=row.author,
        created_at=row.created_at,
        audience=row.audience,
        policy_refs=tuple(row.policy_refs),
        expires_on=row.expires_on,
    )


def approve(
    database: Database, store: PolicyStore, embedder: Embedder, verified_id: int, reviewer: str
) -> VerifiedEntry:
    """Back in service, checked against today's policy: recorded, then searchable again."""
    with database.transaction() as session:
        entry = entry_of(verified_answers.approve(session, verified_id, reviewer))
    index_verified(store, embedder, entry)
    logger.info("verified answer=%d approved by=%s", verified_id, reviewer)
    return entry


def retire(
    database: Database, store: PolicyStore, verified_id: int, reviewer: str, reason: str
) -> None:
    """Out of service for good. Search drops it first: a retired answer is never served."""
    unindex_verified(store, verified_id)
    with database.transaction() as session:
        verified_answers.retire(session, verified_id, reviewer, reason)
    logger.info("verified answer=%d retired by=%s", verified_id, reviewer)
