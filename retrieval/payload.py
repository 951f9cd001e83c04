"""The payload stored with every chunk in Qdrant: one typed model for writing and reading.

Qdrant payloads are the version registry too (no SQL): chunk 0 of each version carries
everything `documents list` shows, and every chunk carries what a search result needs.
Dates are stored twice: as ISO strings ("2026-03-01") to show and for Qdrant's datetime
index, and as day numbers (20260301) that the in-force filter compares. Integer ranges are
exact for calendar days and cheap in local mode, which parses datetime strings per point.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from retrieval.documents import SECTION_SEPARATOR
from retrieval.store import day_number, doc_key

# Fixed namespace, so a chunk keeps its point id across runs and machines.
_POINT_NAMESPACE = uuid.UUID("6f1d7c52-3b0e-4d6a-9a51-2f3c9e8b7d10")


class ChunkPayload(BaseModel):
    """What is stored with one chunk of one version of one document."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    doc_id: str
    version: int
    title: str
    headings: tuple[str, ...]
    chunk_index: int
    chunk_count: int
    text: str
    source: str
    effective_from: date
    # Declared in the document, or else the day the next version takes over; None: open.
    # (Qdrant drops a key set to null, so a missing key reads as None.)
    effective_to: date | None = None
    declared_effective_to: date | None = None
    audience: str
    tags: tuple[str, ...]
    url: str | None = None
    content_hash: str
    index_signature: str  # embedding model and chunk settings the chunks were built with
    ingested_at: datetime

    # mypy does not take a decorator over a property; pydantic documents this stacking.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def doc_key(self) -> str:
        return doc_key(self.doc_id)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_from_day(self) -> int:
        return day_number(self.effective_from)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_to_day(self) -> int | None:
        return day_number(self.effective_to) if self.effective_to else None

    @property
    def section(self) -> str:
        return SECTION_SEPARATOR.join(self.headings) or self.title

    def to_store(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def point_id(doc_id: str, version: int, chunk_index: int) -> str:
    """Stable id of a chunk: the same document, version and position give the same point."""
    key = doc_key(doc_id)
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{key}\x1f{version}\x1f{chunk_index}"))
