"""Fixtures for retrieval tests: the real embedding model (loaded once) and in-memory Qdrant."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from embedding_support import default_embedder
from qdrant_client import QdrantClient
from retrieval_support import COLLECTION, TODAY, Ingest, WriteDoc, write

from retrieval.chunking import ChunkingOptions
from retrieval.embedding import Embedder
from retrieval.ingest import IngestReport, ingest_files
from retrieval.search import PolicySearch


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    # The packaged all-MiniLM-L6-v2 with the default backend: seconds to load, so once per
    # session (the CLI tests in this process get the same instance from load_embedder's cache).
    return default_embedder()


@pytest.fixture
def client() -> Iterator[QdrantClient]:
    qdrant = QdrantClient(":memory:")
    yield qdrant
    qdrant.close()


@pytest.fixture
def chunking() -> ChunkingOptions:
    return ChunkingOptions(max_tokens=200, overlap_tokens=32)


@pytest.fixture
def ingest(client: QdrantClient, embedder: Embedder, chunking: ChunkingOptions) -> Ingest:
    """Ingest paths into the in-memory collection, with `today` fixed unless given."""

    def run(*paths: Path, today: date = TODAY) -> IngestReport:
        return ingest_files(
            list(paths),
            client=client,
            collection=COLLECTION,
            embedder=embedder,
            chunking=chunking,
            today=today,
        )

    return run


@pytest.fixture
def policy_search(client: QdrantClient, embedder: Embedder) -> PolicySearch:
    return PolicySearch(client, COLLECTION, embedder, prefetch_limit=20)


@pytest.fixture
def write_doc(tmp_path: Path) -> WriteDoc:
    return lambda name, text: write(tmp_path, name, text)
