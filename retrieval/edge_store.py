"""The policy store embedded in the process: Qdrant Edge, Qdrant's own engine, on disk.

One shard per collection under QDRANT_PATH: HNSW and payload indexes, the IDF-weighted
sparse vector and RRF fusion as on a server, at a millisecond a query where a scan of every
point took hundreds. Edge keeps no collection metadata, so what the shard was built with
(embedding model, store format) sits in a small JSON file beside it. A shard is opened by
one process at a time: a lock file says which, so a second one gets a clear message
instead of a write-ahead-log error.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import qdrant_edge as edge

from retrieval.errors import StoreBusyError, StoreUnavailableError
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

_UPSERT_BATCH = 512
_SCROLL_PAGE = 512
# Candidates the HNSW search keeps per query, and ACORN for filtered search: the in-force
# filter leaves out superseded versions, which cut paths through the graph. Measured with
# make bench-retrieval: ef 128 alone gave dense recall@10 0.98 at 10,000 chunks (ef 512:
# 0.986-0.994, not reliably); with ACORN 1.0 at 1,000 to 100,000, for +2 ms at 100,000.
# ACORN's selectivity cap is lifted because this filter keeps most points.
SEARCH_EF = 128
_SCHEMA = {
    IndexKind.KEYWORD: edge.PayloadSchemaType.Keyword,
    IndexKind.INTEGER: edge.PayloadSchemaType.Integer,
}


class EdgeStore:
    """One collection as a Qdrant Edge shard in `root/<collection>`."""

    def __init__(self, root: Path, collection: str) -> None:
        self._root = root
        self._collection = collection
        self._shard_path = root / collection
        self._meta_path = root / f"{collection}.json"
        self._lock = _hold_lock(root / f"{collection}.lock", root)
        self._shard: edge.EdgeShard | None = None
        if self.exists():
            self._shard = self._load()

    @property
    def collection(self) -> str:
        return self._collection

    @property
    def engine(self) -> str:
        return f"Qdrant Edge at {self._shard_path}"

    @property
    def path(self) -> Path:
        return self._shard_path

    def exists(self) -> bool:
        return self._meta_path.exists() and (self._shard_path / "edge_config.json").exists()

    def create(self, dimension: int, model: str, layout: ClusterLayout) -> None:
        del layout  # one shard in one process: nothing to spread
        config = edge.EdgeConfig(
            vectors={
                DENSE_VECTOR: edge.EdgeVectorParams(size=dimension, distance=edge.Distance.Cosine)
            },
            sparse_vectors={SPARSE_VECTOR: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
        )
        self._shard = edge.EdgeShard.create(str(self._shard_path), config)
        self._create_indexes()
        # Written last: a shard without it is an unfinished create, redone on the next one.
        self._write_meta({"embedding_model": model, "dimension": dimension, "format": STORE_FORMAT})

    def shape(self) -> StoreShape:
        meta = json.loads(self._meta_path.read_text())
        return StoreShape(
            dense_names=(DENSE_VECTOR,),
            dense_size=int(meta["dimension"]),
            embedding_model=meta.get("embedding_model"),
            sparse_idf=True,
            store_format=int(meta.get("format", 1)),
        )

    def upsert(self, points: Sequence[StorePoint]) -> None:
        shard = self._opened()
        for start in range(0, len(points), _UPSERT_BATCH):
            batch = [
                edge.Point(
                    point.id,
                    {
                        DENSE_VECTOR: point.dense,
                        SPARSE_VECTOR: edge.SparseVector(
                            list(point.sparse.indices), list(point.sparse.values)
                        ),
                    },
                    point.payload,
                )
                for point in points[start : start + _UPSERT_BATCH]
            ]
            shard.update(edge.UpdateOperation.upsert_points(batch))
        shard.flush()

    def delete(self, where: Where) -> None:
        shard = self._opened()
        shard.update(edge.UpdateOperation.delete_points_by_filter(edge_filter(where)))
        shard.flush()

    def set_payload(self, where: Where, payload: dict[str, Any]) -> None:
        shard = self._opened()
        shard.update(edge.UpdateOperation.set_payload_by_filter(edge_filter(where), payload))
        shard.flush()

    def scroll(self, where: Where, *, exclude: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        selector = edge.PayloadSelector.Exclude(list(exclude)) if exclude else True
        for record in self._scroll(where, selector, with_vector=False):
            yield record.payload or {}

    def export(self) -> Iterator[StorePoint]:
        for record in self._scroll(Where(), True, with_vector=True):
            vectors = record.vector if isinstance(record.vector, dict) else {}
            dense, sparse = vectors[DENSE_VECTOR], vectors[SPARSE_VECTOR]
            # Every point is written with one dense and one sparse vector (upsert).
            assert is_dense(dense), record.id
            assert isinstance(sparse, edge.SparseVector), record.id
            yield StorePoint(
                id=str(record.id),
                dense=list(dense),
                sparse=SparseVector(tuple(sparse.indices), tuple(sparse.values)),
                payload=record.payload or {},
            )

    def _scroll(self, where: Where, selector: Any, *, with_vector: bool) -> Iterator[edge.Record]:
        shard = self._opened()
        offset: Any = None
        while True:
            records, offset = shard.scroll(
                edge.ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=edge_filter(where),
                    with_payload=selector,
                    with_vector=with_vector,
                )
            )
            yield from records
            if offset is None:
                return

    def count(self, where: Where | None = None) -> int:
        request = edge.CountRequest(exact=True, filter=edge_filter(where) if where else None)
        return self._opened().count(request)

    def nearest(self, vector: list[float] | SparseVector, where: Where, limit: int) -> list[Hit]:
        points = self._opened().query(
            edge.QueryRequest(
                limit=limit,
                query=_nearest(vector),
                filter=edge_filter(where),
                params=_PARAMS,
                with_payload=True,
                with_vector=[DENSE_VECTOR],
            )
        )
        return [_hit(point) for point in points]

    def hybrid(
        self, dense: list[float], sparse: SparseVector, where: Where, limit: int, prefetch: int
    ) -> list[Hit]:
        candidates = edge_filter(where)
        prefetches = [
            edge.Prefetch(limit=prefetch, query=_nearest(dense), filter=candidates, params=_PARAMS)
        ]
        if sparse.indices:  # a query of stop words only leaves the dense half
            prefetches.append(
                edge.Prefetch(limit=prefetch, query=_nearest(sparse), filter=candidates)
            )
        fusion = edge.Fusion.Rrf(k=RRF_K)
        # Rrf is a Fusion, as the query wants; qdrant_edge's stub declares it inside Fusion
        # without the base class, which this check gives back to the type checker.
        assert isinstance(fusion, edge.Fusion)
        points = self._opened().query(
            edge.QueryRequest(
                limit=limit,
                prefetches=prefetches,
                query=fusion,
                filter=candidates,
                with_payload=True,
                with_vector=[DENSE_VECTOR],
            )
        )
        return [_hit(point) for point in points]

    def optimize(self) -> None:
        """Build HNSW and merge segments for what was written (blocks until done)."""
        self._opened().optimize()

    def stats(self) -> StoreStats:
        info = self._opened().info()
        return StoreStats(
            points=info.points_count,
            indexed_vectors=info.indexed_vectors_count,
            segments=info.segments_count,
        )

    def close(self) -> None:
        if self._shard is not None:
            self._shard.close()
            self._shard = None
        self._lock.close()  # closing the file releases the lock

    def _opened(self) -> edge.EdgeShard:
        if self._shard is None:
            raise StoreUnavailableError(f"the Qdrant Edge store at {self._shard_path} is closed")
        return self._shard

    def _load(self) -> edge.EdgeShard:
        try:
            return edge.EdgeShard.load(str(self._shard_path))
        except Exception as error:  # the binding raises plain exceptions with Rust's text
            raise StoreUnavailableError(
                f"cannot open the Qdrant Edge store at {self._shard_path} ({error}); "
                "move the folder aside and run `dispatchbot ingest` again to rebuild it"
            ) from error

    def _write_meta(self, meta: dict[str, Any]) -> None:
        temporary = self._meta_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(meta, indent=2))
        os.replace(temporary, self._meta_path)

    def _create_indexes(self) -> None:
        shard = self._opened()
        for name, kind in PAYLOAD_INDEXES.items():
            shard.update(edge.UpdateOperation.create_field_index(name, _SCHEMA[kind]))

    def mark_format(self, store_format: int) -> None:
        self._create_indexes()  # a newer format may filter on a new field
        meta = json.loads(self._meta_path.read_text())
        self._write_meta({**meta, "format": store_format})


_PARAMS = edge.SearchParams(
    hnsw_ef=SEARCH_EF, acorn=edge.AcornSearchParams(enable=True, max_selectivity=1.0)
)


def _hold_lock(path: Path, root: Path) -> IO[str]:
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
    except OSError as error:
        raise StoreUnavailableError(
            f"cannot open the policy store at {root} ({error.strerror}); "
            "set QDRANT_PATH or DISPATCHBOT_DATA_DIR to a writable folder"
        ) from error
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise StoreBusyError(
            f"{holder} holds the policy store at {root}; `dispatchbot ingest` and "
            "`dispatchbot documents` reach a running bot by themselves, other commands need it "
            "stopped (or QDRANT_URL set to a server)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"dispatchbot process {os.getpid()}")
    handle.flush()
    return handle


def edge_filter(where: Where) -> edge.Filter:
    must, must_not = where.conditions()
    return edge.Filter(
        must=[_condition(c) for c in must] or None,
        must_not=[_condition(c) for c in must_not] or None,
    )


def _condition(condition: Condition) -> edge.FieldCondition:
    if isinstance(condition, Equals):
        return edge.FieldCondition(condition.key, match=edge.MatchValue(condition.value))
    if isinstance(condition, AtMost):
        return edge.FieldCondition(condition.key, range=edge.RangeFloat(lte=condition.value))
    return edge.FieldCondition(condition.key, match=edge.MatchAny(list(condition.values)))


def _nearest(vector: list[float] | SparseVector) -> edge.Query:
    if isinstance(vector, SparseVector):
        return edge.Query.Nearest(
            edge.SparseVector(list(vector.indices), list(vector.values)), using=SPARSE_VECTOR
        )
    return edge.Query.Nearest(vector, using=DENSE_VECTOR)


def _hit(point: edge.ScoredPoint) -> Hit:
    vectors = point.vector if isinstance(point.vector, dict) else {}
    dense = vectors.get(DENSE_VECTOR)
    return Hit(
        id=str(point.id),
        score=point.score,
        payload=point.payload or {},
        dense=list(dense) if is_dense(dense) else None,
    )
