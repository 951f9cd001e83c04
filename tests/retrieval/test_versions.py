"""Versions: no-op re-ingest, supersession, future versions, --as-of, conflicts and deletion."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from retrieval_support import TODAY, Ingest, WriteDoc, write

from retrieval.chunking import ChunkingOptions
from retrieval.embedding import Embedder
from retrieval.ingest import FileOutcome, FileStatus, ingest_files
from retrieval.search import PolicySearch
from retrieval.store import PolicyStore
from retrieval.versions import delete_versions, read_versions

LIMITS_V1 = """# Detention Pay

## Driver detention pay

Company drivers are paid 20 dollars per hour of detention after two hours on site.
"""
LIMITS_V2 = LIMITS_V1.replace("20 dollars", "25 dollars")


def point_count(store: PolicyStore) -> int:
    return store.count()


def texts(policy_search: PolicySearch, query: str, as_of: date | None = None) -> list[str]:
    return [result.text for result in policy_search.search(query, k=5, as_of=as_of)]


def test_unchanged_reingest_is_a_noop(
    ingest: Ingest, store: PolicyStore, write_doc: WriteDoc, tmp_path: Path
) -> None:
    path = write_doc("detention.md", LIMITS_V1)
    first = ingest(path)
    stored = read_versions(store)["detention"]
    points = point_count(store)

    again = ingest(path, today=date(2026, 12, 1))
    moved = ingest(write(tmp_path / "moved", "detention.md", LIMITS_V1))

    assert [o.status for o in first.outcomes] == [FileStatus.NEW]
    assert first.chunks_written > 0
    assert [o.status for o in again.outcomes + moved.outcomes] == [FileStatus.UNCHANGED] * 2
    assert again.chunks_written == moved.chunks_written == 0
    assert point_count(store) == points
    assert read_versions(store)["detention"] == stored  # same ingested_at too


def test_new_chunk_settings_rebuild_the_same_version_in_place(
    store: PolicyStore, embedder: Embedder, write_doc: WriteDoc
) -> None:
    path = write_doc("detention.md", LIMITS_V1 + "\n" + "Detention is logged in the TMS. " * 40)

    def ingest_with(max_tokens: int) -> list[FileOutcome]:
        return list(
            ingest_files(
                [path],
                store=store,
                embedder=embedder,
                chunking=ChunkingOptions(max_tokens=max_tokens, overlap_tokens=16),
                today=date(2026, 1, 10),
            ).outcomes
        )

    first = ingest_with(200)
    rebuilt = ingest_with(64)
    again = ingest_with(64)

    assert [(o.status, o.version) for o in first + rebuilt + again] == [
        (FileStatus.NEW, 1),
        (FileStatus.REINDEXED, 1),
        (FileStatus.UNCHANGED, 1),
    ]
    assert rebuilt[0].chunks > first[0].chunks
    (version,) = read_versions(store)["detention"]
    assert (version.chunk_count, version.effective_from) == (rebuilt[0].chunks, date(2026, 1, 10))
    assert point_count(store) == rebuilt[0].chunks  # the old, larger chunks are gone


def test_changed_document_supersedes_the_old_version_which_stays_for_audit(
    ingest: Ingest, store: PolicyStore, policy_search: PolicySearch, write_doc: WriteDoc
) -> None:
    path = write_doc("detention.md", LIMITS_V1)
    ingest(path, today=date(2026, 1, 10))
    path.write_text(LIMITS_V2)

    report = ingest(path, today=date(2026, 2, 1))

    assert [(o.status, o.version) for o in report.outcomes] == [(FileStatus.UPDATED, 2)]
    versions = read_versions(store)["detention"]
    assert [(v.version, v.effective_from, v.effective_to) for v in versions] == [
        (1, date(2026, 1, 10), date(2026, 2, 1)),
        (2, date(2026, 2, 1), None),
    ]
    query = "how much is driver detention pay per hour"
    assert all("25 dollars" in text for text in texts(policy_search, query))
    assert all("20 dollars" in text for text in texts(policy_search, query, date(2026, 1, 20)))
    assert texts(policy_search, query, date(2025, 12, 31)) == []  # before any version


def test_future_version_does_not_hide_the_current_one_until_its_date(
    ingest: Ingest, policy_search: PolicySearch, write_doc: WriteDoc
) -> None:
    front = "---\ndoc_id: detention\nversion: {version}\neffective_from: {start}\n---\n"
    future = write_doc("v2.md", front.format(version=2, start="2027-02-01") + LIMITS_V2)
    current = write_doc("v1.md", front.format(version=1, start="2025-04-01") + LIMITS_V1)
    ingest(future, current)  # newest first: order does not matter

    results = policy_search.search("driver detention pay", k=3, as_of=TODAY)
    assert {(r.version, r.effective_to) for r in results} == {(1, date(2027, 2, 1))}
    assert {r.version for r in policy_search.search("driver detention pay", k=3)} == {1}
    assert {
        r.version for r in policy_search.search("driver detention pay", as_of=date(2027, 1, 31))
    } == {1}
    assert {
        r.version for r in policy_search.search("driver detention pay", as_of=date(2027, 2, 1))
    } == {2}


def test_declared_end_date_retires_a_version_without_a_successor(
    ingest: Ingest, policy_search: PolicySearch, write_doc: WriteDoc
) -> None:
    front = "---\neffective_from: 2025-01-01\neffective_to: 2026-07-01\n---\n"
    ingest(write_doc("detention.md", front + LIMITS_V1))

    assert texts(policy_search, "driver detention pay", date(2026, 6, 30))
    assert texts(policy_search, "driver detention pay", date(2026, 7, 1)) == []


def test_same_declared_version_with_other_content_is_refused(
    ingest: Ingest, store: PolicyStore, policy_search: PolicySearch, write_doc: WriteDoc
) -> None:
    front = "---\ndoc_id: detention\nversion: 3\n---\n"
    ingest(write_doc("detention.md", front + LIMITS_V1))

    report = ingest(write_doc("edited.md", front + LIMITS_V2))

    (outcome,) = report.outcomes
    assert outcome.status is FileStatus.SKIPPED
    assert "version 3 of 'detention' is already stored with other content" in outcome.reason
    assert "raise `version`" in outcome.reason
    assert all("20 dollars" in text for text in texts(policy_search, "driver detention pay"))


def test_unreadable_file_is_skipped_and_the_rest_of_the_batch_ingests(
    ingest: Ingest, policy_search: PolicySearch, write_doc: WriteDoc
) -> None:
    empty = write_doc("empty.md", "")
    good = write_doc("detention.md", LIMITS_V1)

    report = ingest(empty, good)

    assert [(o.path, o.status, o.reason) for o in report.outcomes] == [
        (str(empty), FileStatus.SKIPPED, "the file is empty"),
        (str(good), FileStatus.NEW, ""),
    ]
    assert texts(policy_search, "driver detention pay")


def test_two_changed_copies_in_one_batch_become_consecutive_versions(
    ingest: Ingest, store: PolicyStore, write_doc: WriteDoc
) -> None:
    report = ingest(write_doc("a/detention.md", LIMITS_V1), write_doc("b/detention.md", LIMITS_V2))

    assert [(o.status, o.version) for o in report.outcomes] == [
        (FileStatus.NEW, 1),
        (FileStatus.UPDATED, 2),
    ]
    assert [v.version for v in read_versions(store)["detention"]] == [1, 2]


def test_delete_document_removes_every_version(
    ingest: Ingest, store: PolicyStore, policy_search: PolicySearch, write_doc: WriteDoc
) -> None:
    path = write_doc("detention.md", LIMITS_V1)
    ingest(path, today=date(2026, 1, 1))
    path.write_text(LIMITS_V2)
    ingest(path, today=date(2026, 2, 1))
    ingest(write_doc("other.md", "# Other\n\nParking rules for the yard."))

    assert delete_versions(store, "detention") == [1, 2]

    assert "detention" not in read_versions(store)
    assert {r.doc_id for r in policy_search.search("driver detention pay", k=10)} == {"other"}
    assert delete_versions(store, "detention") == []


def test_deleting_the_newest_version_reopens_the_previous_one(
    ingest: Ingest, store: PolicyStore, policy_search: PolicySearch, write_doc: WriteDoc
) -> None:
    path = write_doc("detention.md", LIMITS_V1)
    ingest(path, today=date(2026, 1, 1))
    path.write_text(LIMITS_V2)
    ingest(path, today=date(2026, 2, 1))

    assert delete_versions(store, "detention", version=2) == [2]

    versions = read_versions(store)["detention"]
    assert [(v.version, v.effective_to) for v in versions] == [(1, None)]
    assert all("20 dollars" in text for text in texts(policy_search, "driver detention pay"))
