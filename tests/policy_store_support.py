"""Policies ingested into a policy store, for tests that use retrieval rather than test it:
Qdrant Edge on disk, the engine dispatchbot runs on unless QDRANT_URL names a server."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from embedding_support import default_embedder

from retrieval.chunking import ChunkingOptions
from retrieval.edge_store import EdgeStore
from retrieval.embedding import Embedder
from retrieval.ingest import ingest_files
from retrieval.search import PolicySearch

COLLECTION = "policies"


@contextmanager
def ingested_search(
    folder: Path, files: Sequence[Path], embedder: Embedder | None = None
) -> Iterator[PolicySearch]:
    """`files` ingested into an Edge store under `folder`, searched; the store closed after."""
    embedder = embedder or default_embedder()
    store = EdgeStore(folder / "edge", COLLECTION)
    try:
        ingest_files(
            list(files),
            store=store,
            embedder=embedder,
            chunking=ChunkingOptions(max_tokens=256, overlap_tokens=32),
        )
        yield PolicySearch(store, embedder)
    finally:
        store.close()
