"""The Qdrant collection: one named dense vector, one named IDF sparse vector, payload indexes.

An existing collection is checked against the embedding model before anything is written
or searched, so a model change fails at once with a message saying what to do, instead of
a vector-size error from deep inside Qdrant.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from qdrant_client import QdrantClient, models

from retrieval.errors import CollectionMismatchError, NothingIngestedError

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "sparse"
EMBEDDING_MODEL_KEY = "embedding_model"  # in the collection's metadata

# Fields that searches and the version registry filter on (the *_day numbers are what the
# in-force filter compares; the ISO dates are indexed for queries by date in Qdrant itself).
PAYLOAD_INDEXES: dict[str, models.PayloadSchemaType] = {
    "doc_id": models.PayloadSchemaType.KEYWORD,
    "version": models.PayloadSchemaType.INTEGER,
    "effective_from": models.PayloadSchemaType.DATETIME,
    "effective_to": models.PayloadSchemaType.DATETIME,
    "effective_from_day": models.PayloadSchemaType.INTEGER,
    "effective_to_day": models.PayloadSchemaType.INTEGER,
    "audience": models.PayloadSchemaType.KEYWORD,
    "chunk_index": models.PayloadSchemaType.INTEGER,
}


@dataclass(frozen=True)
class ClusterLayout:
    """How a Qdrant cluster spreads the collection; None leaves it to the server's defaults.

    Fixed when the collection is created (the first ingest): shards are the unit that moves
    between nodes, replicas keep search up when a node is lost, and the write consistency
    factor is how many replicas must confirm a write. Local mode ignores all three.
    """

    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None


def ensure_collection(
    client: QdrantClient,
    name: str,
    dimension: int,
    model: str,
    layout: ClusterLayout | None = None,
) -> None:
    """Create the collection if it is missing; otherwise check it fits the embedding model."""
    if client.collection_exists(name):
        check_collection(client, name, dimension, model)
        return
    layout = layout or ClusterLayout()
    client.create_collection(
        name,
        shard_number=layout.shard_number,
        replication_factor=layout.replication_factor,
        write_consistency_factor=layout.write_consistency_factor,
        # Two models can share a dimension; the name tells their vectors apart.
        metadata={EMBEDDING_MODEL_KEY: model},
        vectors_config={
            DENSE_VECTOR: models.VectorParams(size=dimension, distance=models.Distance.COSINE)
        },
        sparse_vectors_config={
            SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
        },
    )
    with warnings.catch_warnings():
        # Local mode keeps no payload indexes and warns so; a server uses them.
        warnings.filterwarnings("ignore", message="Payload indexes have no effect")
        for field, schema in PAYLOAD_INDEXES.items():
            client.create_payload_index(name, field, field_schema=schema)


def require_collection(
    client: QdrantClient, name: str, dimension: int | None = None, model: str | None = None
) -> None:
    """For reading: the collection must exist, and fit the model when one is given."""
    if not client.collection_exists(name):
        raise NothingIngestedError(
            f"nothing ingested yet into collection {name!r}: "
            "run `dispatchbot ingest examples/policies` (or your own policy folder)"
        )
    if dimension is not None and model is not None:
        check_collection(client, name, dimension, model)


def check_collection(client: QdrantClient, name: str, dimension: int, model: str) -> None:
    """Fail fast, saying what to do, when the collection was built differently."""
    config = client.get_collection(name).config
    params = config.params
    dense = params.vectors if isinstance(params.vectors, dict) else {}
    remedy = (
        "re-ingest into a new collection (set QDRANT_COLLECTION) "
        "or use the embedding model it was built with (EMBEDDING_MODEL)"
    )
    if DENSE_VECTOR not in dense:
        found = ", ".join(repr(key) for key in dense) or "one unnamed vector"
        raise CollectionMismatchError(
            f"collection {name!r} has no dense vector named {DENSE_VECTOR!r} (it has {found}); "
            f"it was not made by dispatchbot: {remedy}"
        )
    size = dense[DENSE_VECTOR].size
    if size != dimension:
        raise CollectionMismatchError(
            f"collection {name!r} has {size}-dim {DENSE_VECTOR!r} vectors but the embedding "
            f"model gives {dimension}; {remedy}"
        )
    built_with = (config.metadata or {}).get(EMBEDDING_MODEL_KEY)
    if built_with is not None and built_with != model:
        raise CollectionMismatchError(
            f"collection {name!r} was built with embedding model {built_with!r} but "
            f"EMBEDDING_MODEL gives {model!r}; re-ingest into a new collection (set "
            f"QDRANT_COLLECTION) or set EMBEDDING_MODEL={built_with}"
        )
    sparse = params.sparse_vectors or {}
    if SPARSE_VECTOR not in sparse or sparse[SPARSE_VECTOR].modifier != models.Modifier.IDF:
        raise CollectionMismatchError(
            f"collection {name!r} has no sparse vector {SPARSE_VECTOR!r} with IDF weighting, "
            f"which keyword search needs; {remedy}"
        )
