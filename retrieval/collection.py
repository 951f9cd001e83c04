"""The policy collection: created on the first ingest, checked before every use.

An existing collection is checked against the embedding model before anything is written
or searched, so a model change fails at once with a message saying what to do, instead of
a vector-size error from deep inside Qdrant. A collection written in an earlier store
format is brought up to date from its own points, with one line saying so.
"""

from __future__ import annotations

import logging
from typing import Any

from retrieval.errors import CollectionMismatchError, NothingIngestedError
from retrieval.store import (
    DENSE_VECTOR,
    SPARSE_VECTOR,
    STORE_FORMAT,
    ClusterLayout,
    PolicyStore,
    StorePoint,
    doc_key,
)

log = logging.getLogger(__name__)


def ensure_collection(
    store: PolicyStore, dimension: int, model: str, layout: ClusterLayout | None = None
) -> None:
    """Create the collection if it is missing; otherwise check it fits the embedding model."""
    if store.exists():
        check_collection(store, dimension, model)
        return
    store.create(dimension, model, layout or ClusterLayout())


def require_collection(
    store: PolicyStore, dimension: int | None = None, model: str | None = None
) -> None:
    """For reading: the collection must exist, and fit the model when one is given."""
    if not store.exists():
        raise NothingIngestedError(
            f"nothing ingested yet into collection {store.collection!r}: "
            "run `dispatchbot ingest examples/policies` (or your own policy folder)"
        )
    if dimension is not None and model is not None:
        check_collection(store, dimension, model)
        return
    shape = store.shape()  # no model to check against: still bring the format up to date
    if DENSE_VECTOR in shape.dense_names and shape.store_format < STORE_FORMAT:
        upgrade_format(store, shape.store_format)


def check_collection(store: PolicyStore, dimension: int, model: str) -> None:
    """Fail fast, saying what to do, when the collection was built differently."""
    name = store.collection
    shape = store.shape()
    remedy = (
        "re-ingest into a new collection (set QDRANT_COLLECTION) "
        "or use the embedding model it was built with (EMBEDDING_MODEL)"
    )
    if DENSE_VECTOR not in shape.dense_names:
        found = ", ".join(repr(key) for key in shape.dense_names) or "one unnamed vector"
        raise CollectionMismatchError(
            f"collection {name!r} has no dense vector named {DENSE_VECTOR!r} (it has {found}); "
            f"it was not made by dispatchbot: {remedy}"
        )
    if shape.dense_size != dimension:
        raise CollectionMismatchError(
            f"collection {name!r} has {shape.dense_size}-dim {DENSE_VECTOR!r} vectors but the "
            f"embedding model gives {dimension}; {remedy}"
        )
    if shape.embedding_model is not None and shape.embedding_model != model:
        raise CollectionMismatchError(
            f"collection {name!r} was built with embedding model {shape.embedding_model!r} "
            f"but EMBEDDING_MODEL gives {model!r}; re-ingest into a new collection (set "
            f"QDRANT_COLLECTION) or set EMBEDDING_MODEL={shape.embedding_model}"
        )
    if not shape.sparse_idf:
        raise CollectionMismatchError(
            f"collection {name!r} has no sparse vector {SPARSE_VECTOR!r} with IDF weighting, "
            f"which keyword search needs; {remedy}"
        )
    if shape.store_format < STORE_FORMAT:
        upgrade_format(store, shape.store_format)


def upgrade_format(store: PolicyStore, found: int) -> int:
    """Rewrite every point in the current store format; returns how many were rewritten.

    Format 2 adds `doc_key`, the case-folded doc_id that commands match on; format 3 only
    adds indexes, which marking the format creates.
    """
    points = [
        StorePoint(point.id, point.dense, point.sparse, _current_payload(point.payload))
        for point in store.export()
    ]
    store.upsert(points)
    store.mark_format(STORE_FORMAT)
    log.warning(
        "brought collection %r from store format %d to %d (%d chunks rewritten from their "
        "own points)",
        store.collection,
        found,
        STORE_FORMAT,
        len(points),
    )
    return len(points)


def _current_payload(payload: dict[str, Any]) -> dict[str, Any]:
    if "doc_id" in payload:  # a policy chunk, not a verified answer
        return {**payload, "doc_key": doc_key(str(payload["doc_id"]))}
    return payload
