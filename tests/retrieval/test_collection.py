"""The collection layout, and fail-fast checks when it does not fit the embedding model."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient, models

from retrieval.collection import ClusterLayout, ensure_collection, require_collection
from retrieval.errors import CollectionMismatchError, NothingIngestedError

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def test_created_collection_has_named_dense_and_idf_sparse_vectors(client: QdrantClient) -> None:
    ensure_collection(client, "policies", 384, MODEL)

    params = client.get_collection("policies").config.params
    assert isinstance(params.vectors, dict)
    assert params.vectors["dense"].size == 384
    assert params.vectors["dense"].distance == models.Distance.COSINE
    assert params.sparse_vectors is not None
    assert params.sparse_vectors["sparse"].modifier == models.Modifier.IDF
    assert client.get_collection("policies").config.metadata == {"embedding_model": MODEL}
    ensure_collection(client, "policies", 384, MODEL)  # a second run accepts the first's


def test_dimension_mismatch_fails_fast_saying_what_to_do(client: QdrantClient) -> None:
    ensure_collection(client, "policies", 768, "some/768-dim-model")

    with pytest.raises(CollectionMismatchError) as raised:
        ensure_collection(client, "policies", 384, MODEL)

    message = str(raised.value)
    assert "collection 'policies' has 768-dim 'dense' vectors" in message
    assert "the embedding model gives 384" in message
    assert "QDRANT_COLLECTION" in message
    assert "EMBEDDING_MODEL" in message


def test_vector_name_mismatch_fails_fast(client: QdrantClient) -> None:
    client.create_collection(
        "policies", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE)
    )

    with pytest.raises(CollectionMismatchError, match="no dense vector named 'dense'"):
        require_collection(client, "policies", 384, MODEL)


def test_missing_sparse_idf_vector_fails_fast(client: QdrantClient) -> None:
    client.create_collection(
        "policies",
        vectors_config={"dense": models.VectorParams(size=384, distance=models.Distance.COSINE)},
        sparse_vectors_config={"sparse": models.SparseVectorParams()},
    )

    with pytest.raises(CollectionMismatchError, match="IDF"):
        require_collection(client, "policies", 384, MODEL)


def test_same_dimension_but_another_model_fails_fast(client: QdrantClient) -> None:
    # Vectors of two 384-dim models live in different spaces; mixing them ruins search.
    ensure_collection(client, "policies", 384, "BAAI/bge-small-en-v1.5")

    with pytest.raises(CollectionMismatchError) as raised:
        require_collection(client, "policies", 384, MODEL)

    assert "built with embedding model 'BAAI/bge-small-en-v1.5'" in str(raised.value)
    assert "set EMBEDDING_MODEL=BAAI/bge-small-en-v1.5" in str(raised.value)


def test_reading_before_any_ingest_says_how_to_ingest(client: QdrantClient) -> None:
    with pytest.raises(NothingIngestedError, match="dispatchbot ingest examples/policies"):
        require_collection(client, "policies", 384, MODEL)


class _RecordingClient:
    """The real client, noting what the collection was created with."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client
        self.created_with: dict[str, object] = {}

    def create_collection(self, name: str, **options: object) -> bool:
        self.created_with = options
        return self._client.create_collection(name, **options)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)


def test_a_new_collection_is_sharded_and_replicated_as_the_cluster_layout_says(
    client: QdrantClient,
) -> None:
    recording = _RecordingClient(client)
    layout = ClusterLayout(shard_number=6, replication_factor=2, write_consistency_factor=2)

    ensure_collection(recording, "policies", 384, "all-MiniLM-L6-v2", layout)  # type: ignore[arg-type]
    ensure_collection(recording, "policies", 384, "all-MiniLM-L6-v2")  # type: ignore[arg-type]

    assert recording.created_with["shard_number"] == 6
    assert recording.created_with["replication_factor"] == 2
    assert recording.created_with["write_consistency_factor"] == 2
    assert client.collection_exists("policies")
