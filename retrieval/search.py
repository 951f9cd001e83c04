"""Search the policy chunks in force on a date: hybrid (dense + BM25 fused by RRF) by default.

Hybrid is one `query_points` call: a dense and a sparse prefetch, each filtered to the
versions in force, fused with reciprocal rank fusion. Dense-only and sparse-only modes are
kept so the evaluation can compare them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from qdrant_client import QdrantClient, models

from retrieval.collection import DENSE_VECTOR, SPARSE_VECTOR
from retrieval.embedding import Embedder
from retrieval.payload import ChunkPayload
from retrieval.sparse import query_vector
from retrieval.versions import in_force_filter, local_today

log = logging.getLogger(__name__)


class SearchMode(StrEnum):
    HYBRID = "hybrid"
    DENSE = "dense"
    SPARSE = "sparse"


@dataclass(frozen=True)
class SearchResult:
    """One chunk that answers a query, with what a citation needs."""

    chunk_id: str
    text: str
    score: float
    relevance: float  # cosine of query and chunk, comparable across queries and modes
    doc_id: str
    title: str
    section: str
    version: int
    effective_from: date
    effective_to: date | None
    audience: str
    source: str
    tags: tuple[str, ...]
    url: str | None = None  # a link to the policy, when the document declares one

    def to_json(self) -> dict[str, Any]:
        """The stable `--json` shape: dates as ISO strings, tags as a list."""
        fields = asdict(self)
        fields["effective_from"] = self.effective_from.isoformat()
        fields["effective_to"] = self.effective_to.isoformat() if self.effective_to else None
        fields["tags"] = list(self.tags)
        return fields


class PolicySearch:
    """Searches one collection with one embedding model."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        embedder: Embedder,
        prefetch_limit: int = 20,
    ) -> None:
        self._client = client
        self._collection = collection
        self._embedder = embedder
        self._prefetch_limit = prefetch_limit

    @property
    def client(self) -> QdrantClient:
        return self._client

    @property
    def collection(self) -> str:
        return self._collection

    def similarities(self, query: str, texts: Sequence[str]) -> list[float]:
        """Cosine similarity of `query` to each of `texts`, with the search's own model."""
        if not texts:
            return []
        query_vector, *vectors = self._embedder.encode_on_answer_path([query, *texts])
        return [sum(q * v for q, v in zip(query_vector, vector, strict=True)) for vector in vectors]

    def search(
        self,
        query: str,
        *,
        k: int = 5,
        mode: SearchMode = SearchMode.HYBRID,
        as_of: date | None = None,
        audiences: Collection[str] | None = None,
    ) -> list[SearchResult]:
        """The `k` best chunks of the versions in force on `as_of` (default: today).

        `audiences` limits the results to documents written for one of them; None searches
        every audience (the operator's command-line tools).
        """
        if audiences is not None and not audiences:
            return []  # nothing may be seen
        in_force = visible_filter(as_of or local_today(), audiences)
        log.debug("search mode=%s k=%d as_of=%s", mode, k, as_of)
        # The dense query vector is needed in every mode: it measures `relevance`.
        dense = self._embedder.encode_query(query)
        if mode is SearchMode.DENSE:
            points = self._query(dense, DENSE_VECTOR, in_force, k)
        elif mode is SearchMode.SPARSE:
            sparse = query_vector(query)
            # Only stop words: no keyword can match.
            points = self._query(sparse, SPARSE_VECTOR, in_force, k) if sparse.indices else []
        else:
            points = self._hybrid(dense, query_vector(query), in_force, k)
        return [_result(point, dense) for point in points]

    def _query(
        self,
        vector: list[float] | models.SparseVector,
        using: str,
        in_force: models.Filter,
        k: int,
    ) -> list[models.ScoredPoint]:
        return self._client.query_points(
            self._collection,
            query=vector,
            using=using,
            query_filter=in_force,
            limit=k,
            with_payload=True,
            with_vectors=[DENSE_VECTOR],
        ).points

    def _hybrid(
        self,
        dense: list[float],
        sparse: models.SparseVector,
        in_force: models.Filter,
        k: int,
    ) -> list[models.ScoredPoint]:
        """Dense and sparse candidates fused by RRF, in one request."""
        limit = max(self._prefetch_limit, k)
        prefetches = [models.Prefetch(query=dense, using=DENSE_VECTOR, limit=limit)]
        if sparse.indices:  # a query of stop words only leaves the dense half
            prefetches.append(models.Prefetch(query=sparse, using=SPARSE_VECTOR, limit=limit))
        # Qdrant applies the query's filter inside each prefetch too, so both candidate
        # lists come from versions in force before fusion.
        return self._client.query_points(
            self._collection,
            prefetch=prefetches,
            query=models.FusionQuery(fusion=models.Fusion.RRF),
            query_filter=in_force,
            limit=k,
            with_payload=True,
            with_vectors=[DENSE_VECTOR],
        ).points


def visible_filter(day: date, audiences: Collection[str] | None) -> models.Filter:
    """Versions in force on `day`, of documents for one of `audiences` (None: any)."""
    in_force = in_force_filter(day)
    if audiences is None:
        return in_force
    # A condition on the payload index, applied inside each prefetch like the date range,
    # so a restricted chunk is never a candidate, not merely dropped after fusion.
    audience = models.FieldCondition(key="audience", match=models.MatchAny(any=sorted(audiences)))
    return models.Filter(must=[*(in_force.must or []), audience], must_not=in_force.must_not)


def _result(point: models.ScoredPoint, query: list[float]) -> SearchResult:
    payload = ChunkPayload.model_validate(point.payload or {})
    return SearchResult(
        chunk_id=str(point.id),
        text=payload.text,
        score=point.score,
        relevance=_cosine(query, point.vector),
        doc_id=payload.doc_id,
        title=payload.title,
        section=payload.section,
        version=payload.version,
        effective_from=payload.effective_from,
        effective_to=payload.effective_to,
        audience=payload.audience,
        source=payload.source,
        tags=payload.tags,
        url=payload.url,
    )


def _cosine(query: list[float], vectors: models.VectorStruct | None) -> float:
    # Both sides are unit length (the embedder normalizes), so the dot product is the cosine.
    chunk = vectors.get(DENSE_VECTOR) if isinstance(vectors, dict) else None
    if not isinstance(chunk, list):
        return 0.0
    return float(sum(q * c for q, c in zip(query, chunk, strict=True)))
