"""Search the policy chunks in force on a date: hybrid (dense + BM25 fused by RRF) by default.

Hybrid is one query: a dense and a sparse prefetch, each filtered to the versions in force,
fused with reciprocal rank fusion. Dense-only and sparse-only modes are
kept so the evaluation can compare them.
"""

from __future__ import annotations

import logging
import threading
from array import array
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from retrieval.embedding import Embedder
from retrieval.payload import ChunkPayload
from retrieval.sparse import query_vector
from retrieval.store import Hit, PolicyStore, Where
from retrieval.verified import VerifiedMatch, find_verified
from retrieval.versions import local_today
from store.sources import SourceRef

log = logging.getLogger(__name__)

# Scores equal to this many digits are ties (Edge computes them in float32).
_SCORE_DIGITS = 6


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

    def cited(self) -> SourceRef:
        """What a citation of this result shows and keeps."""
        return SourceRef(
            doc_id=self.doc_id,
            title=self.title,
            section=self.section,
            version=self.version,
            effective_from=self.effective_from,
            url=self.url,
            audience=self.audience,
        )

    def to_json(self) -> dict[str, Any]:
        """The stable `--json` shape: dates as ISO strings, tags as a list."""
        fields = asdict(self)
        fields["effective_from"] = self.effective_from.isoformat()
        fields["effective_to"] = self.effective_to.isoformat() if self.effective_to else None
        fields["tags"] = list(self.tags)
        return fields


# Passage vectors kept for the answer path (384 single floats each: about 15 MiB in all).
PASSAGE_VECTORS_KEPT = 10_000


class PolicySearch:
    """Searches one collection of the policy store with one embedding model."""

    def __init__(self, store: PolicyStore, embedder: Embedder, prefetch_limit: int = 20) -> None:
        self._store = store
        self._embedder = embedder
        self._prefetch_limit = prefetch_limit
        # Vectors of policy passages compared on the answer path: the same sentences of the
        # same policies come up question after question, and encoding them is most of the
        # time before the prompt is sent.
        self._passage_vectors: OrderedDict[str, array[float]] = OrderedDict()
        self._passage_lock = threading.Lock()

    @property
    def store(self) -> PolicyStore:
        return self._store

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    def similarities(self, query: str, texts: Sequence[str]) -> list[float]:
        """Cosine similarity of `query` to each of `texts`, with the search's own model."""
        if not texts:
            return []
        with self._passage_lock:
            known = {text: self._passage_vectors.get(text) for text in texts}
        missing = [text for text, vector in known.items() if vector is None]
        query_vector, *encoded = self._embedder.encode_on_answer_path([query, *missing])
        # Single precision, as the model computes them: a quarter of the memory.
        vectors = {text: vector for text, vector in known.items() if vector is not None}
        vectors |= {text: array("f", vector) for text, vector in zip(missing, encoded, strict=True)}
        with self._passage_lock:
            for text, vector in vectors.items():
                self._passage_vectors[text] = vector
                self._passage_vectors.move_to_end(text)
            while len(self._passage_vectors) > PASSAGE_VECTORS_KEPT:
                self._passage_vectors.popitem(last=False)
        return [
            sum(q * v for q, v in zip(query_vector, vectors[text], strict=True)) for text in texts
        ]

    def verified_matches(
        self,
        query: str,
        *,
        as_of: date | None = None,
        audiences: Collection[str] | None = None,
        limit: int = 3,
    ) -> list[VerifiedMatch]:
        """People's verified answers to questions closest to `query`, that readers may see."""
        chosen = None if audiences is None else frozenset(audiences)
        vector = self._embedder.encode_query(query)
        return find_verified(
            self._store, vector, day=as_of or local_today(), audiences=chosen, limit=limit
        )

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
        every audience (the operator's command-line tools). Both conditions apply inside
        each candidate list, so a restricted or retired chunk is never a candidate, not
        merely dropped after fusion.
        """
        if audiences is not None and not audiences:
            return []  # nothing may be seen
        visible = Where.visible(as_of or local_today(), audiences)
        log.debug("search mode=%s k=%d as_of=%s", mode, k, as_of)
        # The dense query vector is needed in every mode: it measures `relevance`.
        dense = self._embedder.encode_query(query)
        # Fused scores tie often (sums of 1 / (2 + rank)) and an engine returns tied points
        # in any order, even from one query to the next: ask for more than `k`, then order
        # ties by id, so that the same question always gets the same sources.
        wanted = k * 2
        if mode is SearchMode.DENSE:
            hits = self._store.nearest(dense, visible, wanted)
        elif mode is SearchMode.SPARSE:
            sparse = query_vector(query)
            # Only stop words: no keyword can match.
            hits = self._store.nearest(sparse, visible, wanted) if sparse.indices else []
        else:
            prefetch = max(self._prefetch_limit, wanted)
            hits = self._store.hybrid(dense, query_vector(query), visible, wanted, prefetch)
        ranked = sorted(hits, key=lambda hit: (-round(hit.score, _SCORE_DIGITS), hit.id))
        return [_result(hit, dense) for hit in ranked[:k]]


def _result(hit: Hit, query: list[float]) -> SearchResult:
    payload = ChunkPayload.model_validate(hit.payload)
    return SearchResult(
        chunk_id=hit.id,
        text=payload.text,
        score=hit.score,
        # Both sides are unit length (the embedder normalizes): the dot product is the cosine.
        relevance=float(sum(q * c for q, c in zip(query, hit.dense or [], strict=False))),
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
