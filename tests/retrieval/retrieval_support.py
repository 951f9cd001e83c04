"""Constants and helpers shared by the retrieval tests (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from retrieval.edge_store import EdgeStore
from retrieval.ingest import IngestReport
from retrieval.server_store import ServerStore
from retrieval.store import PolicyStore

COLLECTION = "policies"
TODAY = date(2026, 11, 24)
REPO = Path(__file__).resolve().parents[2]
SAMPLE_POLICIES = REPO / "examples" / "policies"
SAMPLE_RETRIEVAL_SET = REPO / "examples" / "eval" / "retrieval.jsonl"

# The two engines every store test runs on: Qdrant Edge on disk, the default, and
# qdrant-client's local mode in memory, standing in for a Qdrant server. The fast tier
# (`pytest -m "not vllm"`) leaves the `slow` one out: it runs on the default engine only.
ENGINES = (
    pytest.param("edge", id="edge"),
    pytest.param("server", id="server", marks=pytest.mark.slow),
)

# The `ingest` fixture: paths in, report out; `today=` dates versions that declare no start.
Ingest = Callable[..., IngestReport]
# The `write_doc` fixture: (relative name, text) -> path of the written file.
WriteDoc = Callable[[str, str], Path]


def write(folder: Path, name: str, text: str) -> Path:
    """Write a small test document and return its path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def open_engine(engine: str, folder: Path) -> PolicyStore:
    """An empty store of one of ENGINES: "edge" on disk under `folder`, "server" in memory."""
    if engine == "edge":
        return EdgeStore(folder / "edge", COLLECTION)
    return ServerStore(QdrantClient(":memory:"), COLLECTION, "memory")
