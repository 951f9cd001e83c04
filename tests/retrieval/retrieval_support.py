"""Constants and helpers shared by the retrieval tests (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

from retrieval.ingest import IngestReport

COLLECTION = "policies"
TODAY = date(2026, 11, 24)
REPO = Path(__file__).resolve().parents[2]
SAMPLE_POLICIES = REPO / "examples" / "policies"
SAMPLE_RETRIEVAL_SET = REPO / "examples" / "eval" / "retrieval.jsonl"

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
