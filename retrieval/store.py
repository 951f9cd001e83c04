"""The policy store interface: what retrieval asks of a vector store, whatever engine holds it.

Two engines sit behind it, chosen by settings: Qdrant Edge, Qdrant's engine embedded in the
process (the default, on disk), and a Qdrant server or cluster through qdrant-client
(`QDRANT_URL`). Both keep one named dense vector and one IDF-weighted sparse vector per
chunk, index the payload fields below, and give the same answers to the same requests:
filters are written once here, as `Where`, and each engine translates them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Protocol, TypeGuard

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "sparse"

# Reciprocal rank fusion constant, the one Qdrant servers use: a point's fused score is
# the sum over candidate lists of 1 / (k + rank), rank counted from 0.
RRF_K = 2

# Raised when what a store holds changes shape (2: the case-folded `doc_key`; 3: people's
# verified answers beside the chunks, told apart by `kind`); an older store is rebuilt from
# its own points, its indexes completed, when it is opened.
STORE_FORMAT = 3


class IndexKind(StrEnum):
    KEYWORD = "keyword"
    INTEGER = "integer"


# Fields that searches and the version registry filter on. `doc_key` is the doc_id folded
# to lower case: ids are kept as written and matched without regard to case.
PAYLOAD_INDEXES: dict[str, IndexKind] = {
    "doc_key": IndexKind.KEYWORD,
    "version": IndexKind.INTEGER,
    "effective_from_day": IndexKind.INTEGER,
    "effective_to_day": IndexKind.INTEGER,
    "audience": IndexKind.KEYWORD,
    "chunk_index": IndexKind.INTEGER,
    "kind": IndexKind.KEYWORD,
    "verified_id": IndexKind.INTEGER,
}

# The `kind` of a person's verified answer; policy chunks carry no kind.
VERIFIED_KIND = "verified"


@dataclass(frozen=True)
class SparseVector:
    """Term indices and their weights, indices ascending."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class StorePoint:
    """One chunk as written: its id, its two vectors and its payload."""

    id: str
    dense: list[float]
    sparse: SparseVector
    payload: dict[str, Any]


@dataclass(frozen=True)
class Hit:
    """One point a query found, with its dense vector (for relevance) and payload."""

    id: str
    score: float
    payload: dict[str, Any]
    dense: list[float] | None


@dataclass(frozen=True)
class Where:
    """Which points: every condition given must hold; None leaves that field free.

    `in_force_on` keeps the versions in force on that day (started on or before it, not
    ended by it); `audiences` keeps documents written for one of them; `verified` keeps
    only people's verified answers (True) or only policy chunks (False).
    """

    doc_key: str | None = None
    version: int | None = None
    first_chunks: bool = False
    in_force_on: date | None = None
    audiences: frozenset[str] | None = None
    verified: bool | None = None
    verified_id: int | None = None

    @classmethod
    def visible(
        cls, day: date, audiences: Collection[str] | None, *, verified: bool = False
    ) -> Where:
        chosen = None if audiences is None else frozenset(audiences)
        return cls(in_force_on=day, audiences=chosen, verified=verified)

    @classmethod
    def document(cls, doc_id: str, version: int | None = None) -> Where:
        return cls(doc_key=doc_key(doc_id), version=version)

    def conditions(self) -> tuple[list[Condition], list[Condition]]:
        """What must hold and what must not, for an engine to translate."""
        must: list[Condition] = []
        must_not: list[Condition] = []
        if self.doc_key is not None:
            must.append(Equals("doc_key", self.doc_key))
        if self.version is not None:
            must.append(Equals("version", self.version))
        if self.first_chunks:
            must.append(Equals("chunk_index", 0))
        if self.in_force_on is not None:
            day = day_number(self.in_force_on)
            must.append(AtMost("effective_from_day", day))
            # A missing or null end never matches the range, so open versions stay.
            must_not.append(AtMost("effective_to_day", day))
        if self.verified is not None:
            (must if self.verified else must_not).append(Equals("kind", VERIFIED_KIND))
        if self.verified_id is not None:
            must.append(Equals("verified_id", self.verified_id))
        if self.audiences is not None:
            must.append(AnyOf("audience", tuple(sorted(self.audiences))))
        return must, must_not


@dataclass(frozen=True)
class Equals:
    key: str
    value: str | int


@dataclass(frozen=True)
class AtMost:
    key: str
    value: int


@dataclass(frozen=True)
class AnyOf:
    key: str
    values: tuple[str, ...]


Condition = Equals | AtMost | AnyOf


@dataclass(frozen=True)
class StoreShape:
    """How an existing collection was built, as far as dispatchbot checks it."""

    dense_names: tuple[str, ...]
    dense_size: int | None
    embedding_model: str | None
    sparse_idf: bool
    store_format: int


@dataclass(frozen=True)
class ClusterLayout:
    """How a Qdrant cluster spreads the collection; None leaves it to the server's defaults.

    Fixed when the collection is created (the first ingest): shards are the unit that moves
    between nodes, replicas keep search up when a node is lost, and the write consistency
    factor is how many replicas must confirm a write. The embedded store ignores all three.
    """

    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None


@dataclass(frozen=True)
class StoreStats:
    points: int
    indexed_vectors: int
    segments: int = 0


class PolicyStore(Protocol):
    """One collection of policy chunks in one engine."""

    @property
    def collection(self) -> str: ...

    @property
    def engine(self) -> str:
        """In words, for messages and readiness: 'Qdrant Edge at …', 'Qdrant server at …'."""
        ...

    def exists(self) -> bool: ...

    def create(self, dimension: int, model: str, layout: ClusterLayout) -> None: ...

    def shape(self) -> StoreShape: ...

    def upsert(self, points: Sequence[StorePoint]) -> None:
        """Write `points` in their order; durable when this returns."""
        ...

    def delete(self, where: Where) -> None: ...

    def set_payload(self, where: Where, payload: dict[str, Any]) -> None: ...

    def scroll(self, where: Where, *, exclude: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        """The payloads of every matching point, without the `exclude` fields."""
        ...

    def count(self, where: Where | None = None) -> int: ...

    def export(self) -> Iterator[StorePoint]:
        """Every point with both vectors, to rebuild a store in a newer format."""
        ...

    def nearest(self, vector: list[float] | SparseVector, where: Where, limit: int) -> list[Hit]:
        """The `limit` nearest points by one vector: dense (a list) or keyword (sparse)."""
        ...

    def hybrid(
        self, dense: list[float], sparse: SparseVector, where: Where, limit: int, prefetch: int
    ) -> list[Hit]:
        """Dense and keyword candidates (`prefetch` each, both filtered), fused by RRF."""
        ...

    def mark_format(self, store_format: int) -> None:
        """Record that the points are now in `store_format`."""
        ...

    def optimize(self) -> None:
        """Build indexes for what was written; a server does this by itself."""
        ...

    def stats(self) -> StoreStats: ...

    def close(self) -> None: ...


def is_dense(vector: object) -> TypeGuard[list[float]]:
    """Whether a vector read back from Qdrant is one dense vector (not sparse, not a
    multivector): Qdrant types a point's vectors as any of these."""
    return isinstance(vector, list) and not (vector and isinstance(vector[0], list))


def day_number(day: date) -> int:
    """A calendar day as an ordered integer: 2026-03-01 is 20260301."""
    return day.year * 10_000 + day.month * 100 + day.day


def doc_key(doc_id: str) -> str:
    """How a doc_id is matched: 'HL-OPS-201' and 'hl-ops-201' are one document."""
    return doc_id.casefold()
