"""Ingest files into the collection: load, decide new version or no-op, chunk, embed, write.

Documents are keyed by doc_id. A document whose content hash matches its stored version
is left alone; a changed one becomes a new version and the versions before it get an end
date (see `versions`). A file that cannot be read is reported by name and skipped; the
rest of the batch still goes in.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from retrieval.chunking import Chunk, ChunkingOptions, chunk_document
from retrieval.collection import ensure_collection
from retrieval.documents import Document
from retrieval.embedding import Embedder
from retrieval.errors import UnreadableDocumentError
from retrieval.loaders import load_document
from retrieval.payload import ChunkPayload, point_id
from retrieval.sparse import defined_acronyms, document_vector
from retrieval.store import ClusterLayout, PolicyStore, StorePoint, Where, doc_key
from retrieval.versions import StoredVersion, local_today, refresh_effective_windows, versions_of

log = logging.getLogger(__name__)

# Called as (chunks embedded so far, chunks to embed) before the first batch and after each.
EmbeddingProgress = Callable[[int, int], None]


class FileStatus(StrEnum):
    NEW = "new"  # the first version of a document
    UPDATED = "updated"  # a new version of a document already stored
    UNCHANGED = "unchanged"  # same content as the stored version: nothing written
    REINDEXED = "reindexed"  # same content, new model or chunk settings: chunks rebuilt
    SKIPPED = "skipped"  # unreadable, empty, bad metadata or a version conflict


@dataclass(frozen=True)
class FileOutcome:
    path: str
    status: FileStatus
    doc_id: str | None = None
    version: int | None = None
    chunks: int = 0
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": self.status.value}

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> FileOutcome:
        return cls(**{**fields, "status": FileStatus(fields["status"])})


@dataclass(frozen=True)
class IngestReport:
    outcomes: tuple[FileOutcome, ...]

    def count(self, status: FileStatus) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status is status)

    @property
    def chunks_written(self) -> int:
        return sum(outcome.chunks for outcome in self.outcomes)


@dataclass(frozen=True)
class _Plan:
    """A document that will be written as `record.version`."""

    path: Path
    document: Document
    status: FileStatus
    record: StoredVersion
    note: str = ""


def ingest_files(
    files: Sequence[Path],
    *,
    store: PolicyStore,
    embedder: Embedder,
    chunking: ChunkingOptions,
    batch_size: int = 32,
    today: date | None = None,
    on_progress: EmbeddingProgress | None = None,
    layout: ClusterLayout | None = None,
) -> IngestReport:
    """Ingest `files` in order; `today` dates versions that declare no `effective_from`.

    `layout` shards and replicates the collection if this ingest creates it.
    """
    today = today or local_today()
    ensure_collection(store, embedder.dimension, embedder.name, layout)
    # The model truncates longer inputs, so a chunk may never be longer than it reads.
    chunking = dataclasses.replace(
        chunking, max_tokens=min(chunking.max_tokens, embedder.max_tokens)
    )
    signature = index_signature(embedder.name, chunking)
    # Keyed without regard to case: "HL-OPS-201" and "hl-ops-201" are one document. Read
    # per document as files come: a library of thousands is not read whole for one file.
    registry: dict[str, list[StoredVersion]] = {}
    outcomes: dict[Path, FileOutcome] = {}
    plans: list[_Plan] = []
    for path in files:
        try:
            document = load_document(path)
        except UnreadableDocumentError as error:
            log.debug("skipped %s: %s", path, error.reason)
            outcomes[path] = FileOutcome(str(path), FileStatus.SKIPPED, reason=error.reason)
            continue
        key = doc_key(document.doc_id)
        if key not in registry:
            registry[key] = versions_of(store, document.doc_id)
        stored = registry[key]
        decision = _decide(path, document, stored, today, signature)
        if isinstance(decision, _Plan):
            # Later files in this batch with the same doc_id must see this version.
            stored[:] = [v for v in stored if v.version != decision.record.version]
            stored.append(decision.record)
            plans.append(decision)
        else:
            outcomes[path] = decision

    chunked = [
        (plan, chunk_document(plan.document, chunking, embedder.count_tokens)) for plan in plans
    ]
    vectors = _embed(
        [chunk.embedding_text() for _, chunks in chunked for chunk in chunks],
        embedder,
        batch_size,
        on_progress,
    )
    ingested_at = datetime.now(UTC)
    position = 0
    for plan, chunks in chunked:
        _write_version(
            store,
            plan,
            chunks,
            vectors[position : position + len(chunks)],
            ingested_at,
        )
        position += len(chunks)
        outcomes[plan.path] = FileOutcome(
            str(plan.path),
            plan.status,
            plan.record.doc_id,
            plan.record.version,
            len(chunks),
            reason=plan.note,
        )
        log.debug(
            "wrote %s version %d: %d chunks", plan.document.doc_id, plan.record.version, len(chunks)
        )
    for doc_id in dict.fromkeys(plan.record.doc_id for plan in plans):
        refresh_effective_windows(store, doc_id)
    if plans:
        store.optimize()
    return IngestReport(tuple(outcomes[path] for path in files if path in outcomes))


# Raised whenever the keyword terms of a chunk change (retrieval/sparse.py), so that ingest
# rebuilds the stored chunks of unchanged documents.
KEYWORDS_VERSION = "k2"


def index_signature(model: str, chunking: ChunkingOptions) -> str:
    """What the stored chunks depend on besides the text: the model and the chunk settings."""
    return f"{model}|{chunking.max_tokens}|{chunking.overlap_tokens}|{KEYWORDS_VERSION}"


def _decide(
    path: Path, document: Document, stored: list[StoredVersion], today: date, signature: str
) -> _Plan | FileOutcome:
    """No-op, new version, rebuild or conflict, from the content hash and declared version."""
    known_as = stored[0].doc_id if stored else document.doc_id
    note = (
        ""
        if known_as == document.doc_id
        else f"{document.doc_id!r} is {known_as!r}: ids that differ only in case are one document"
    )
    content_hash = document.content_hash()
    declared = document.declared.version
    if declared is not None:
        match = next((v for v in stored if v.version == declared), None)
        if match is not None and match.content_hash != content_hash:
            return FileOutcome(
                str(path),
                FileStatus.SKIPPED,
                known_as,
                declared,
                reason=(
                    f"version {declared} of {known_as!r} is already stored with other "
                    f"content (from {match.source}); raise `version` to publish the change"
                ),
            )
    else:
        latest = max(stored, key=lambda v: v.version, default=None)
        match = latest if latest and latest.content_hash == content_hash else None
    if match is not None:
        if match.index_signature == signature:
            return FileOutcome(
                str(path), FileStatus.UNCHANGED, known_as, match.version, reason=note
            )
        # Same text, but chunked or embedded differently: rebuild this version's chunks in
        # place. It is not a new version, so its dates stay as they are.
        record = dataclasses.replace(match, source=document.source, index_signature=signature)
        return _Plan(path, document, FileStatus.REINDEXED, record, note)
    record = new_version_record(document, stored, today, signature)
    status = FileStatus.UPDATED if stored else FileStatus.NEW
    return _Plan(path, document, status, record, note)


def new_version_record(
    document: Document, stored: Sequence[StoredVersion], today: date, signature: str
) -> StoredVersion:
    """The registry entry of `document` written as a version after `stored` (none: v1).

    A document keeps the doc_id its first version was written with.
    """
    declared = document.declared.version
    return StoredVersion(
        doc_id=stored[0].doc_id if stored else document.doc_id,
        version=declared or max((v.version for v in stored), default=0) + 1,
        title=document.title,
        source=document.source,
        content_hash=document.content_hash(),
        index_signature=signature,
        effective_from=document.declared.effective_from or today,
        effective_to=document.declared.effective_to,
        declared_effective_to=document.declared.effective_to,
        audience=document.audience,
        tags=document.declared.tags,
        url=document.declared.url,
        chunk_count=0,
        ingested_at=datetime.now(UTC),
    )


def _embed(
    texts: list[str], embedder: Embedder, batch_size: int, on_progress: EmbeddingProgress | None
) -> list[list[float]]:
    if not texts:
        return []
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if on_progress:
            on_progress(done, len(texts))

    if on_progress:
        on_progress(0, len(texts))
    return embedder.encode_documents(texts, batch_size=batch_size, on_progress=advance)


def _write_version(
    store: PolicyStore,
    plan: _Plan,
    chunks: list[Chunk],
    vectors: list[list[float]],
    ingested_at: datetime,
) -> None:
    record = plan.record
    # Leftovers of a run that died half-way are cleared before the version is written again.
    store.delete(Where.document(record.doc_id, record.version))
    store.upsert(version_points(record, chunks, vectors, ingested_at))


def version_points(
    record: StoredVersion,
    chunks: Sequence[Chunk],
    vectors: Sequence[list[float]],
    ingested_at: datetime,
) -> list[StorePoint]:
    """The points of one version, dense and keyword vectors and payload, in write order.

    The registry counts a version as stored once its chunk 0 exists, so chunk 0 comes last:
    a run that dies half-way leaves no version that looks complete.
    """
    acronyms = " ".join(defined_acronyms(chunk.text for chunk in chunks))
    points = [
        StorePoint(
            id=point_id(record.doc_id, record.version, chunk.index),
            dense=vector,
            # A term the document defines ("Service Level Agreements (SLAs)") is what the
            # whole document is searched by, not only the paragraph that defines it.
            sparse=document_vector(f"{chunk.embedding_text()}\n{acronyms}"),
            payload=ChunkPayload(
                doc_id=record.doc_id,
                version=record.version,
                title=record.title,
                headings=chunk.headings,
                chunk_index=chunk.index,
                chunk_count=len(chunks),
                text=chunk.text,
                source=record.source,
                effective_from=record.effective_from,
                effective_to=record.effective_to,
                declared_effective_to=record.declared_effective_to,
                audience=record.audience,
                tags=record.tags,
                url=record.url,
                content_hash=record.content_hash,
                index_signature=record.index_signature,
                ingested_at=ingested_at,
            ).to_store(),
        )
        for chunk, vector in zip(chunks, vectors, strict=True)
    ]
    points.reverse()
    return points
