"""The policy store on a Qdrant server or cluster, through qdrant-client (`QDRANT_URL`).

qdrant-client's local mode speaks the same API in process; the tests use it to stand in for
a server, so that one suite checks both engines give the same results.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient, models

from retrieval.store import (
    DENSE_VECTOR,
    PAYLOAD_INDEXES,
    RRF_K,
    SPARSE_VECTOR,
    STORE_FORMAT,
    AtMost,
    ClusterLayout,
    Condition,
    Equals,
    Hit,
    IndexKind,
    SparseVector,
    StorePoint,
    StoreShape,
    StoreStats,
    Where,
    is_dense,
)

EMBEDDING_MODEL_KEY = "embedding_model"  # in the collection's metadata
STORE_FORMAT_KEY = "dispatchbot_store_format"
_UPSERT_BATCH = 128
_SCROLL_PAGE = 256
_SCHEMA = {
    IndexKind.KEYWORD: models.PayloadSchemaType.KEYWORD,
    IndexKind.INTEGER: models.PayloadSchemaType.INTEGER,
}


class ServerStore:
    """One collection on a Qdrant server (or in qdrant-client's local mode)."""

    def __init__(self, client: QdrantClient, collection: str, where: str) -> None:
        self._client = client
        self._collection = collection
        self._where = where

    @property
    def collection(self) -> str:
        return self._collection

    @property
    def engine(self) -> str:
        return f"Qdrant server at {self._where}"

    @property
    def client(self) -> QdrantClient:
        return self._client

    def exists(self) -> bool:
        return self._client.collection_exists(self._collection)

    def create(self, dimension: int, model: str, layout: ClusterLayout) -> None:
        self._client.create_collection(
            self._collection,
            shard_number=layout.shard_number,
            replication_factor=layout.replication_factor,
            write_consistency_factor=layout.write_consistency_factor,
            # Two models can share a dimension; the name tells their vectors apart.
            metadata={EMBEDDING_MODEL_KEY: model, STORE_FORMAT_KEY: STORE_FORMAT},
            vectors_config={
                DENSE_VECTOR: models.VectorParams(size=dimension, distance=models.Distance.COSINE)
            },
            sparse_vectors_config={
                SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
            },
        )
        self.create_indexes()

    def create_indexes(self) -> None:
        with warnings.catch_warnings():
            # Local mode keeps no payload indexes and warns so; a server uses them.
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for name, kind in PAYLOAD_INDEXES.items():
                self._client.create_payload_index(
                    self._collection, name, field_schema=_SCHEMA[kind]
                )

    def shape(self) -> StoreShape:
        config = self._client.get_collection(self._collection).config
        params = config.params
        dense = params.vectors if isinstance(params.vectors, dict) else {}
        sparse = params.sparse_vectors or {}
        metadata = config.metadata or {}
        return StoreShape(
            dense_names=tuple(dense),
            dense_size=dense[DENSE_VECTOR].size if DENSE_VECTOR in dense else None,
            embedding_model=metadata.get(EMBEDDING_MODEL_KEY),
            sparse_idf=SPARSE_VECTOR in sparse
            and sparse[SPARSE_VECTOR].modifier == models.Modifier.IDF,
            store_format=int(metadata.get(STORE_FORMAT_KEY, 1)),
        )

    def mark_format(self, store_format: int) -> None:
        self.create_indexes()  # a newer format may filter on a new field
        metadata = self._client.get_collection(self._collection).config.metadata or {}
        self._client.update_collection(
            self._collection, metadata={**metadata, STORE_FORMAT_KEY: store_format}
        )

    def upsert(self, points: Sequence[StorePoint]) -> None:
        structs = [
            models.PointStruct(
                id=point.id,
                vector={
                    DENSE_VECTOR: point.dense,
                    SPARSE_VECTOR: models.SparseVector(
                        indices=list(point.sparse.indices), values=list(point.sparse.values)
                    ),
                },
                payload=point.payload,
            )
            for point in points
        ]
        for start in range(0, len(structs), _UPSERT_BATCH):
            batch = structs[start : start + _UPSERT_BATCH]
            self._client.upsert(self._collection, points=batch, wait=True)

    def delete(self, where: Where) -> None:
        self._client.delete(self._collection, points_selector=server_filter(where), wait=True)

    def set_payload(self, where: Where, payload: dict[str, Any]) -> None:
        self._client.set_payload(
            self._collection, payload=payload, points=server_filter(where), wait=True
        )

    def scroll(self, where: Where, *, exclude: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        selector = models.PayloadSelectorExclude(exclude=list(exclude)) if exclude else True
        for point in self._scroll(where, selector, with_vectors=False):
            yield point.payload or {}

    def export(self) -> Iterator[StorePoint]:
        """Every point with both vectors, for rebuilding a store in a newer format."""
        for point in self._scroll(Where(), True, with_vectors=True):
            vectors = point.vector if isinstance(point.vector, dict) else {}
            sparse = vectors.get(SPARSE_VECTOR)
            dense = vectors.get(DENSE_VECTOR)
            assert is_dense(dense)
            assert isinstance(sparse, models.SparseVector)
            yield StorePoint(
                id=str(point.id),
                dense=[float(value) for value in dense],
                sparse=SparseVector(tuple(sparse.indices), tuple(sparse.values)),
                payload=point.payload or {},
            )

    def _scroll(
        self, where: Where, selector: Any, *, with_vectors: bool
    ) -> Iterator[models.Record]:
        offset: models.ExtendedPointId | None = None
        while True:
            points, offset = self._client.scroll(
                self._collection,
                scroll_filter=server_filter(where),
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=selector,
                with_vectors=with_vectors,
            )
            yield from points
            if offset is None:
                return

    def count(self, where: Where | None = None) -> int:
        query_filter = server_filter(where) if where else None
        return self._client.count(self._collection, count_filter=query_filter, exact=True).count

    def nearest(self, vector: list[float] | SparseVector, where: Where, limit: int) -> list[Hit]:
        using = SPARSE_VECTOR if isinstance(vector, SparseVector) else DENSE_VECTOR
        points = self._client.query_points(
            self._collection,
            query=_query_vector(vector),
            using=using,
            query_filter=server_filter(where),
            limit=limit,
            with_payload=True,
            with_vectors=[DENSE_VECTOR],
        ).points
        return [_hit(point) for point in points]

    def hybrid(
        self, dense: list[float], sparse: SparseVector, where: Where, limit: int, prefetch: int
    ) -> list[Hit]:
        prefetches = [models.Prefetch(query=dense, using=DENSE_VECTOR, limit=prefetch)]
        if sparse.indices:  # a query of stop words only leaves the dense half
            prefetches.append(
                models.Prefetch(query=_query_vector(sparse), using=SPARSE_VECTOR, limit=prefetch)
            )
        # The query's filter applies inside each prefetch too, so both candidate lists come
        # from visible versions before fusion.
        points = self._client.query_points(
            self._collection,
            prefetch=prefetches,
            query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
            query_filter=server_filter(where),
            limit=limit,
            with_payload=True,
            with_vectors=[DENSE_VECTOR],
        ).points
        return [_hit(point) for point in points]

    def optimize(self) -> None:
        """A server indexes in the background."""

    def stats(self) -> StoreStats:
        info = self._client.get_collection(self._collection)
        return StoreStats(
            points=info.points_count or 0,
            indexed_vectors=info.indexed_vectors_count or 0,
            segments=info.segments_count or 0,
        )

    def close(self) -> None:
        self._client.close()


def server_filter(where: Where) -> models.Filter:
    must, must_not = where.conditions()
    return models.Filter(
        must=[_condition(c) for c in must], must_not=[_condition(c) for c in must_not]
    )


def _condition(condition: Condition) -> models.FieldCondition:
    if isinstance(condition, Equals):
        match = models.MatchValue(value=condition.value)
        return models.FieldCondition(key=condition.key, match=match)
    if isinstance(condition, AtMost):
        return models.FieldCondition(key=condition.key, range=models.Range(lte=condition.value))
    return models.FieldCondition(
        key=condition.key, match=models.MatchAny(any=list(condition.values))
    )


def _query_vector(vector: list[float] | SparseVector) -> list[float] | models.SparseVector:
    if isinstance(vector, SparseVector):
        return models.SparseVector(indices=list(vector.indices), values=list(vector.values))
    return vector


def _hit(point: models.ScoredPoint) -> Hit:
    vectors = point.vector if isinstance(point.vector, dict) else {}
    dense = vectors.get(DENSE_VECTOR)
    return Hit(
        id=str(point.id),
        score=point.score,
        payload=point.payload or {},
        dense=dense if is_dense(dense) else None,
    )
