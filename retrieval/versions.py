"""Document versions and the dates they are in force, kept in the chunks' Qdrant payloads.

Each version of a document is in force from its `effective_from` until its declared
`effective_to`, or else until the next newer version's `effective_from`. So a version
dated in the future does not hide the current one today; it takes over on its date. Old
versions stay in the collection for audit: searches filter them out by date.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from qdrant_client import QdrantClient, models

from retrieval.payload import ChunkPayload, day_number

_SCROLL_PAGE = 256


@dataclass(frozen=True)
class StoredVersion:
    """One stored version of a document, as the registry sees it (its first chunk's payload)."""

    doc_id: str
    version: int
    title: str
    source: str
    content_hash: str
    index_signature: str
    effective_from: date
    effective_to: date | None
    declared_effective_to: date | None
    audience: str
    tags: tuple[str, ...]
    chunk_count: int
    url: str | None
    ingested_at: datetime

    @classmethod
    def from_payload(cls, payload: ChunkPayload) -> StoredVersion:
        return cls(
            doc_id=payload.doc_id,
            version=payload.version,
            title=payload.title,
            source=payload.source,
            content_hash=payload.content_hash,
            index_signature=payload.index_signature,
            effective_from=payload.effective_from,
            effective_to=payload.effective_to,
            declared_effective_to=payload.declared_effective_to,
            audience=payload.audience,
            tags=payload.tags,
            chunk_count=payload.chunk_count,
            url=payload.url,
            ingested_at=payload.ingested_at,
        )

    def in_force_on(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day < self.effective_to)


def read_versions(
    client: QdrantClient, collection: str, doc_id: str | None = None
) -> dict[str, list[StoredVersion]]:
    """Every stored version by doc_id, oldest version first."""
    conditions = [models.FieldCondition(key="chunk_index", match=models.MatchValue(value=0))]
    if doc_id is not None:
        conditions.append(_match("doc_id", doc_id))
    found: dict[str, list[StoredVersion]] = defaultdict(list)
    offset: models.ExtendedPointId | None = None
    while True:
        points, offset = client.scroll(
            collection,
            scroll_filter=models.Filter(must=conditions),
            limit=_SCROLL_PAGE,
            offset=offset,
            with_payload=models.PayloadSelectorExclude(exclude=["text"]),
            with_vectors=False,
        )
        for point in points:
            payload = ChunkPayload.model_validate({**(point.payload or {}), "text": ""})
            found[payload.doc_id].append(StoredVersion.from_payload(payload))
        if offset is None:
            break
    return {key: sorted(versions, key=lambda v: v.version) for key, versions in found.items()}


def effective_until(versions: list[StoredVersion]) -> dict[int, date | None]:
    """The end of each version's window: declared, or the next newer version's start."""
    ordered = sorted(versions, key=lambda v: v.version)
    ends: dict[int, date | None] = {}
    for current, newer in zip(ordered, [*ordered[1:], None], strict=True):
        if current.declared_effective_to is not None:
            ends[current.version] = current.declared_effective_to
        else:
            ends[current.version] = newer.effective_from if newer else None
    return ends


def refresh_effective_windows(client: QdrantClient, collection: str, doc_id: str) -> None:
    """Rewrite `effective_to` on the chunks of every version of `doc_id` whose window moved."""
    versions = read_versions(client, collection, doc_id).get(doc_id, [])
    ends = effective_until(versions)
    for version in versions:
        end = ends[version.version]
        if end != version.effective_to:
            client.set_payload(
                collection,
                payload={
                    "effective_to": end.isoformat() if end else None,
                    "effective_to_day": day_number(end) if end else None,
                },
                points=version_filter(doc_id, version.version),
                wait=True,
            )


def delete_versions(
    client: QdrantClient, collection: str, doc_id: str, version: int | None = None
) -> list[int]:
    """Delete a document (every version) or one version; returns the versions deleted.

    Deleting one version reopens the window of the one before it.
    """
    stored = read_versions(client, collection, doc_id).get(doc_id, [])
    doomed = [v.version for v in stored if version is None or v.version == version]
    # Delete even when the registry shows nothing: it also clears a half-written version.
    client.delete(collection, points_selector=version_filter(doc_id, version), wait=True)
    if doomed and version is not None:
        refresh_effective_windows(client, collection, doc_id)
    return doomed


def local_today() -> date:
    """Today where dispatchbot runs: effective dates are calendar days, not instants."""
    return datetime.now().astimezone().date()


def in_force_filter(day: date) -> models.Filter:
    """Chunks of versions in force on `day`: started on or before it, not ended by it."""
    number = day_number(day)
    return models.Filter(
        must=[models.FieldCondition(key="effective_from_day", range=models.Range(lte=number))],
        # A missing or null end never matches the range, so open versions stay.
        must_not=[models.FieldCondition(key="effective_to_day", range=models.Range(lte=number))],
    )


def version_filter(doc_id: str, version: int | None = None) -> models.Filter:
    """The chunks of one document, or of one version of it."""
    conditions = [_match("doc_id", doc_id)]
    if version is not None:
        conditions.append(_match("version", version))
    return models.Filter(must=conditions)


def _match(key: str, value: str | int) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))
