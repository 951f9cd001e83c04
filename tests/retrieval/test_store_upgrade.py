"""Stores written by an earlier dispatchbot: a collection in qdrant-client's local mode on disk
moves into Qdrant Edge when it is first opened, and a store in format 1 (no `doc_key`) is
rewritten in the current format from its own points. Nothing is ingested again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models
from retrieval_support import COLLECTION, SAMPLE_POLICIES, TODAY
from typer.testing import CliRunner

from bot.cli import app
from retrieval.chunking import ChunkingOptions
from retrieval.client import open_store
from retrieval.collection import check_collection, require_collection
from retrieval.edge_store import EdgeStore
from retrieval.embedding import Embedder
from retrieval.ingest import FileStatus, ingest_files
from retrieval.search import PolicySearch
from retrieval.server_store import ServerStore
from retrieval.store import STORE_FORMAT, PolicyStore, StorePoint, Where
from retrieval.versions import delete_versions, read_versions
from store.settings import Settings

CORPUS = [SAMPLE_POLICIES / name for name in ("load-approval-v2.md", "load-approval.md")]
CORPUS += [SAMPLE_POLICIES / name for name in ("service-slas-v1.md", "service-slas.md")]
QUESTION = "who approves a 30,000 lb load"


def current_points(embedder: Embedder) -> list[StorePoint]:
    """The corpus as the current release writes it: ingested into a scratch store."""
    scratch = ServerStore(QdrantClient(":memory:"), COLLECTION, "memory")
    try:
        report = ingest_files(
            CORPUS,
            store=scratch,
            embedder=embedder,
            chunking=ChunkingOptions(max_tokens=256, overlap_tokens=32),
            today=TODAY,
        )
        assert report.count(FileStatus.SKIPPED) == 0, report.outcomes
        return list(scratch.export())
    finally:
        scratch.close()


def write_format_1(client: QdrantClient, points: list[StorePoint], model: str) -> None:
    """The collection as dispatchbot wrote it before store formats: the model in its metadata
    and nothing else, chunk payloads without `doc_key`."""
    client.create_collection(
        COLLECTION,
        metadata={"embedding_model": model},
        vectors_config={
            "dense": models.VectorParams(size=len(points[0].dense), distance=models.Distance.COSINE)
        },
        sparse_vectors_config={"sparse": models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )
    client.upsert(
        COLLECTION,
        points=[
            models.PointStruct(
                id=point.id,
                vector={
                    "dense": point.dense,
                    "sparse": models.SparseVector(
                        indices=list(point.sparse.indices), values=list(point.sparse.values)
                    ),
                },
                payload={key: value for key, value in point.payload.items() if key != "doc_key"},
            )
            for point in points
        ],
        wait=True,
    )


def payloads(store: PolicyStore) -> list[dict]:
    return list(store.scroll(Where(), exclude=["text"]))


def assert_upgraded(store: PolicyStore, points: list[StorePoint], embedder: Embedder) -> None:
    """Every point is there in the current format, found by doc_id and by search."""
    assert store.shape().store_format == STORE_FORMAT
    assert store.count() == len(points)
    stored = payloads(store)
    assert all(payload["doc_key"] == payload["doc_id"].casefold() for payload in stored)
    registry = read_versions(store)
    assert {doc_id: [v.version for v in versions] for doc_id, versions in registry.items()} == {
        "load-approval": [2, 3],
        "service-slas": [1, 2],
    }
    assert [v.version for v in read_versions(store, "Load-Approval")["load-approval"]] == [2, 3]
    (top,) = PolicySearch(store, embedder).search(QUESTION, k=1, as_of=TODAY)
    assert (top.doc_id, top.version) == ("load-approval", 3)


@pytest.fixture(scope="module")
def points(embedder: Embedder) -> list[StorePoint]:
    if not SAMPLE_POLICIES.is_dir():
        pytest.skip("examples/policies is not there")
    return current_points(embedder)


def test_a_local_mode_store_moves_into_edge_when_first_opened(
    tmp_path: Path,
    embedder: Embedder,
    points: list[StorePoint],
    caplog: pytest.LogCaptureFixture,
) -> None:
    qdrant_path = tmp_path / "var" / "qdrant"
    earlier = QdrantClient(path=str(qdrant_path))  # as an earlier dispatchbot left it
    write_format_1(earlier, points, embedder.name)
    earlier.close()
    settings = Settings(_env_file=None, data_dir=tmp_path / "var", qdrant_url=None)

    with caplog.at_level(logging.WARNING, logger="retrieval"), open_store(settings) as store:
        assert isinstance(store, EdgeStore)
        assert store.path == qdrant_path / "edge" / COLLECTION
        assert store.count() == len(points)
        assert store.shape().store_format == 1
        assert not any("doc_key" in payload for payload in payloads(store))

        require_collection(store, embedder.dimension, embedder.name)  # the format upgrade

        assert_upgraded(store, points, embedder)

    backup = qdrant_path / f"local-mode-backup-{COLLECTION}"
    assert (backup / "storage.sqlite").is_file()
    assert not (qdrant_path / "collection" / COLLECTION).exists()
    moved, rewritten = (record.getMessage() for record in caplog.records)
    assert f"moved {len(points)} chunks of collection 'policies'" in moved
    assert "into Qdrant Edge" in moved
    assert str(backup) in moved
    assert f"from store format 1 to {STORE_FORMAT} ({len(points)} chunks rewritten" in rewritten

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="retrieval"), open_store(settings) as again:
        require_collection(again, embedder.dimension, embedder.name)
        assert_upgraded(again, points, embedder)
    assert caplog.records == []  # moved and upgraded once


def test_delete_is_the_first_command_after_the_move(
    tmp_path: Path, embedder: Embedder, points: list[StorePoint]
) -> None:
    earlier = QdrantClient(path=str(tmp_path / "var" / "qdrant"))
    write_format_1(earlier, points, embedder.name)
    earlier.close()
    env = {"DISPATCHBOT_DATA_DIR": str(tmp_path / "var"), "QDRANT_URL": "", "COLUMNS": "200"}

    deleted = CliRunner().invoke(
        app, ["documents", "delete", "service-slas", "--version", "1", "--yes"], env=env
    )

    assert deleted.exit_code == 0, deleted.output
    assert "Deleted service-slas version(s) 1." in deleted.stdout


def test_a_server_collection_in_format_1_is_upgraded_in_place(
    embedder: Embedder, points: list[StorePoint], caplog: pytest.LogCaptureFixture
) -> None:
    client = QdrantClient(":memory:")
    write_format_1(client, points, embedder.name)
    store = ServerStore(client, COLLECTION, "memory")
    try:
        assert store.shape().store_format == 1
        assert not any("doc_key" in payload for payload in payloads(store))

        with caplog.at_level(logging.WARNING, logger="retrieval"):
            check_collection(store, embedder.dimension, embedder.name)

        assert_upgraded(store, points, embedder)
        metadata = client.get_collection(COLLECTION).config.metadata
        assert metadata == {
            "embedding_model": embedder.name,
            "dispatchbot_store_format": STORE_FORMAT,
        }
        (rewritten,) = (record.getMessage() for record in caplog.records)
        assert f"collection 'policies' from store format 1 to {STORE_FORMAT}" in rewritten
        assert f"({len(points)} chunks rewritten" in rewritten
        assert delete_versions(store, "Service-SLAs", version=1) == [1]
        assert [v.version for v in read_versions(store)["service-slas"]] == [2]

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="retrieval"):
            check_collection(store, embedder.dimension, embedder.name)
        assert caplog.records == []  # upgraded once
    finally:
        store.close()
