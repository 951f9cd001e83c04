"""Fixtures for retrieval tests: the real embedding model (loaded once) and the policy store,
each test run once on each engine: Qdrant Edge on disk (the default) and qdrant-client's
local mode in memory, standing in for a Qdrant server. Both must give the same answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from embedding_support import default_embedder
from retrieval_support import ENGINES, TODAY, Ingest, WriteDoc, open_engine, write

from retrieval.chunking import ChunkingOptions
from retrieval.embedding import Embedder
from retrieval.ingest import IngestReport, ingest_files
from retrieval.search import PolicySearch
from retrieval.store import PolicyStore


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    # The packaged all-MiniLM-L6-v2 with the default backend: seconds to load, so once per
    # session (the CLI tests in this process get the same instance from load_embedder's cache).
    return default_embedder()


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PolicyStore]:
    opened = open_engine(request.param, tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def chunking() -> ChunkingOptions:
    return ChunkingOptions(max_tokens=200, overlap_tokens=32)


@pytest.fixture
def ingest(store: PolicyStore, embedder: Embedder, chunking: ChunkingOptions) -> Ingest:
    """Ingest paths into the test's store, with `today` fixed unless given."""

    def run(*paths: Path, today: date = TODAY) -> IngestReport:
        return ingest_files(
            list(paths), store=store, embedder=embedder, chunking=chunking, today=today
        )

    return run


@pytest.fixture
def policy_search(store: PolicyStore, embedder: Embedder) -> PolicySearch:
    return PolicySearch(store, embedder, prefetch_limit=20)


@pytest.fixture
def write_doc(tmp_path: Path) -> WriteDoc:
    return lambda name, text: write(tmp_path, name, text)
