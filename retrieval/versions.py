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

from retrieval.payload import ChunkPayload
from retrieval.store import PolicyStore, Where, day_number, doc_key


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


def read_versions(store: PolicyStore, doc_id: str | None = None) -> dict[str, list[StoredVersion]]:
    """Every stored version by doc_id as written, oldest version first.

    `doc_id` is matched without regard to case.
    """
    where = Where(first_chunks=True, doc_key=None if doc_id is None else doc_key(doc_id))
    found: dict[str, list[StoredVersion]] = defaultdict(list)
    for payload in store.scroll(where, exclude=["text"]):
        chunk = ChunkPayload.model_validate({**payload, "text": ""})
        found[chunk.doc_id].append(StoredVersion.from_payload(chunk))
    return {key: sorted(versions, key=lambda v: v.version) for key, versions in found.items()}


def versions_of(store: PolicyStore, doc_id: str) -> list[StoredVersion]:
    """The stored versions of one document, whatever the case it is written in."""
    return [version for versions in read_versions(store, doc_id).values() for version in versions]


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


def refresh_effective_windows(store: PolicyStore, doc_id: str) -> None:
    """Rewrite `effective_to` on the chunks of every version of `doc_id` whose window moved."""
    versions = versions_of(store, doc_id)
    ends = effective_until(versions)
    for version in versions:
        end = ends[version.version]
        if end != version.effective_to:
            store.set_payload(
                Where.document(doc_id, version.version),
                {
                    "effective_to": end.isoformat() if end else None,
                    "effective_to_day": day_number(end) if end else None,
                },
            )


def delete_versions(store: PolicyStore, doc_id: str, version: int | None = None) -> list[int]:
    """Delete a document (every version) or one version; returns the versions deleted.

    Deleting one version reopens the window of the one before it.
    """
    stored = versions_of(store, doc_id)
    doomed = [v.version for v in stored if version is None or v.version == version]
    # Delete even when the registry shows nothing: it also clears a half-written version.
    store.delete(Where.document(doc_id, version))
    if doomed and version is not None:
        refresh_effective_windows(store, doc_id)
    return doomed


def local_today() -> date:
    """Today where dispatchbot runs: effective dates are calendar days, not instants."""
    return datetime.now().astimezone().date()
