"""The collection layout, and fail-fast checks when it does not fit the embedding model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models
from retrieval_support import COLLECTION

from retrieval.collection import ensure_collection, require_collection
from retrieval.edge_store import EdgeStore
from retrieval.errors import CollectionMismatchError, NothingIngestedError
from retrieval.server_store import ServerStore
from retrieval.store import STORE_FORMAT, ClusterLayout, PolicyStore

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def qdrant() -> Iterator[QdrantClient]:
    """qdrant-client's local mode, for collections made by hand the way a server holds them."""
    client = QdrantClient(":memory:")
    yield client
    client.close()


def test_created_collection_has_named_dense_and_idf_sparse_vectors(store: PolicyStore) -> None:
    ensure_collection(store, 384, MODEL)

    shape = store.shape()
    assert shape.dense_names == ("dense",)
    assert shape.dense_size == 384
    assert shape.embedding_model == MODEL
    assert shape.sparse_idf
    assert shape.store_format == STORE_FORMAT
    if isinstance(store, ServerStore):
        config = store.client.get_collection(COLLECTION).config
        assert isinstance(config.params.vectors, dict)
        assert config.params.vectors["dense"].distance == models.Distance.COSINE
        assert config.params.sparse_vectors is not None
        assert config.params.sparse_vectors["sparse"].modifier == models.Modifier.IDF
        assert config.metadata == {
            "embedding_model": MODEL,
            "dispatchbot_store_format": STORE_FORMAT,
        }
    else:
        assert isinstance(store, EdgeStore)
        config = json.loads((store.path / "edge_config.json").read_text())
        assert config["vectors"] == {"dense": {"size": 384, "distance": "Cosine"}}
        assert config["sparse_vectors"] == {"sparse": {"modifier": "idf"}}
    ensure_collection(store, 384, MODEL)  # a second run accepts the first's
    assert store.shape() == shape


def test_dimension_mismatch_fails_fast_saying_what_to_do(store: PolicyStore) -> None:
    ensure_collection(store, 768, "some/768-dim-model")

    with pytest.raises(CollectionMismatchError) as raised:
        ensure_collection(store, 384, MODEL)

    message = str(raised.value)
    assert "collection 'policies' has 768-dim 'dense' vectors" in message
    assert "the embedding model gives 384" in message
    assert "QDRANT_COLLECTION" in message
    assert "EMBEDDING_MODEL" in message


def test_vector_name_mismatch_fails_fast(qdrant: QdrantClient) -> None:
    # Only a server can hold a collection dispatchbot did not make; Edge stores are its own.
    qdrant.create_collection(
        COLLECTION, vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE)
    )

    with pytest.raises(CollectionMismatchError, match="no dense vector named 'dense'"):
        require_collection(ServerStore(qdrant, COLLECTION, "memory"), 384, MODEL)


def test_missing_sparse_idf_vector_fails_fast(qdrant: QdrantClient) -> None:
    qdrant.create_collection(
        COLLECTION,
        vectors_config={"dense": models.VectorParams(size=384, distance=models.Distance.COSINE)},
        sparse_vectors_config={"sparse": models.SparseVectorParams()},
    )

    with pytest.raises(CollectionMismatchError, match="IDF"):
        require_collection(ServerStore(qdrant, COLLECTION, "memory"), 384, MODEL)


def test_same_dimension_but_another_model_fails_fast(store: PolicyStore) -> None:
    # Vectors of two 384-dim models live in different spaces; mixing them ruins search.
    ensure_collection(store, 384, "BAAI/bge-small-en-v1.5")

    with pytest.raises(CollectionMismatchError) as raised:
        require_collection(store, 384, MODEL)

    assert "built with embedding model 'BAAI/bge-small-en-v1.5'" in str(raised.value)
    assert "set EMBEDDING_MODEL=BAAI/bge-small-en-v1.5" in str(raised.value)


def test_reading_before_any_ingest_says_how_to_ingest(store: PolicyStore) -> None:
    with pytest.raises(NothingIngestedError, match="dispatchbot ingest examples/policies"):
        require_collection(store, 384, MODEL)
    with pytest.raises(NothingIngestedError, match="collection 'policies'"):
        require_collection(store)


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
    qdrant: QdrantClient,
) -> None:
    recording = _RecordingClient(qdrant)
    store = ServerStore(recording, COLLECTION, "memory")  # type: ignore[arg-type]
    layout = ClusterLayout(shard_number=6, replication_factor=2, write_consistency_factor=2)

    ensure_collection(store, 384, "all-MiniLM-L6-v2", layout)
    ensure_collection(store, 384, "all-MiniLM-L6-v2")

    assert recording.created_with["shard_number"] == 6
    assert recording.created_with["replication_factor"] == 2
    assert recording.created_with["write_consistency_factor"] == 2
    assert qdrant.collection_exists(COLLECTION)


def test_the_embedded_store_takes_a_cluster_layout_and_ignores_it(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge", COLLECTION)
    layout = ClusterLayout(shard_number=6, replication_factor=2, write_consistency_factor=2)
    try:
        ensure_collection(store, 384, MODEL, layout)

        assert store.exists()
        assert store.shape().dense_size == 384
    finally:
        store.close()
