"""Search in all three modes returns cited chunks; hybrid is one fused query_points call."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models
from retrieval_support import COLLECTION, SAMPLE_POLICIES, Ingest, WriteDoc

from retrieval.chunking import ChunkingOptions
from retrieval.embedding import Embedder
from retrieval.ingest import ingest_files
from retrieval.loaders import collect_files
from retrieval.payload import point_id
from retrieval.search import PolicySearch, SearchMode
from retrieval.server_store import ServerStore
from retrieval.store import RRF_K, Hit, PolicyStore, SparseVector, Where

LOAD_APPROVAL = """---
doc_id: load-approval
title: Load Approval Thresholds
version: 3
effective_from: 2026-03-01
audience: dispatch
tags: [dispatch, loads]
---
# Load Approval Thresholds

## Approval by weight

Loads up to 26,000 lb are approved by the dispatcher. From 26,001 to 40,000 lb the shift
lead on duty approves. Over 40,000 lb the operations manager approves.

## Overweight permits

A permit is needed when the loaded truck exceeds 80,000 lb gross vehicle weight.
"""

REEFER = """---
doc_id: reefer-temperature
title: Reefer Temperature Control
version: 4
effective_from: 2026-05-15
audience: service
---
# Reefer Temperature Control

## Setpoints by commodity

Ice cream travels at minus 20 degrees Fahrenheit. Fresh produce travels at 34 degrees.

## Out-of-range rules

A reading outside the allowed deviation for 30 minutes is an excursion; call the reefer desk.
"""

HAZMAT = """# Hazardous Materials Handling

## Placards

Placards are required on all four sides of the trailer for 1,001 lb or more of hazmat.
"""


@pytest.fixture
def corpus(ingest: Ingest, write_doc: WriteDoc) -> list[Path]:
    paths = [
        write_doc("load-approval.md", LOAD_APPROVAL),
        write_doc("reefer.md", REEFER),
        write_doc("hazmat.txt", HAZMAT),
    ]
    ingest(*paths, today=date(2026, 6, 1))
    return paths


@pytest.mark.usefixtures("corpus")
@pytest.mark.parametrize("mode", list(SearchMode))
@pytest.mark.parametrize(
    ("query", "doc_id", "section"),
    [
        (
            "who approves a 30,000 lb load",
            "load-approval",
            "Load Approval Thresholds > Approval by weight",
        ),
        (
            "what temperature for ice cream",
            "reefer-temperature",
            "Reefer Temperature Control > Setpoints by commodity",
        ),
        ("when do we need placards", "hazmat", "Hazardous Materials Handling > Placards"),
    ],
)
def test_each_mode_finds_the_answering_section(
    policy_search: PolicySearch, mode: SearchMode, query: str, doc_id: str, section: str
) -> None:
    results = policy_search.search(query, k=3, mode=mode)

    assert (results[0].doc_id, results[0].section) == (doc_id, section)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_results_carry_what_a_citation_needs(
    policy_search: PolicySearch, corpus: list[Path]
) -> None:
    (top,) = policy_search.search("ice cream setpoint", k=1)

    assert top.doc_id == "reefer-temperature"
    assert top.title == "Reefer Temperature Control"
    assert top.section == "Reefer Temperature Control > Setpoints by commodity"
    assert top.version == 4
    assert top.effective_from == date(2026, 5, 15)
    assert top.effective_to is None
    assert top.audience == "service"
    assert top.source == str(corpus[1])
    assert top.chunk_id == point_id("reefer-temperature", 4, 0)
    assert top.text.startswith("Ice cream travels at minus 20 degrees Fahrenheit.")
    assert set(top.to_json()) >= {"doc_id", "title", "section", "version", "score", "text"}


def test_as_of_before_a_document_started_leaves_it_out(
    policy_search: PolicySearch, corpus: list[Path]
) -> None:
    # The reefer policy starts on 2026-05-15; on 2026-05-01 only the other two are in force.
    results = policy_search.search("ice cream temperature", k=10, as_of=date(2026, 5, 1))

    assert results
    assert "reefer-temperature" not in {r.doc_id for r in results}


@pytest.mark.usefixtures("corpus")
def test_k_limits_the_results(policy_search: PolicySearch) -> None:
    assert len(policy_search.search("load", k=2)) == 2
    assert len(policy_search.search("load", k=10, mode=SearchMode.DENSE)) == 5  # every chunk


@pytest.mark.usefixtures("corpus")
def test_stop_words_only_query(policy_search: PolicySearch) -> None:
    # No keyword to match: sparse finds nothing, hybrid falls back to its dense half.
    assert policy_search.search("what is the", mode=SearchMode.SPARSE) == []
    assert policy_search.search("what is the", k=2, mode=SearchMode.HYBRID)


class CountingClient(QdrantClient):
    """An in-memory Qdrant that records every query_points request."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.queries: list[dict[str, Any]] = []

    def query_points(self, collection_name: str, **kwargs: Any) -> models.QueryResponse:
        self.queries.append(kwargs)
        return super().query_points(collection_name, **kwargs)


def test_hybrid_is_one_query_with_dense_and_sparse_prefetches_fused_by_rrf(
    embedder: Embedder, write_doc: WriteDoc
) -> None:
    client = CountingClient()
    store = ServerStore(client, COLLECTION, "memory")
    ingest_files(
        [write_doc("reefer.md", REEFER)],
        store=store,
        embedder=embedder,
        chunking=ChunkingOptions(max_tokens=200, overlap_tokens=32),
    )
    search = PolicySearch(store, embedder, prefetch_limit=7)

    results = search.search("ice cream temperature", k=2)

    (query,) = client.queries
    assert query["query"] == models.RrfQuery(rrf=models.Rrf(k=RRF_K))
    assert [(p.using, p.limit) for p in query["prefetch"]] == [("dense", 7), ("sparse", 7)]
    assert query["query_filter"] is not None  # Qdrant applies it inside both prefetches
    assert results[0].doc_id == "reefer-temperature"
    store.close()


class RecordingStore:
    """A store that notes each search request it is given, then passes it on."""

    def __init__(self, store: PolicyStore) -> None:
        self._store = store
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def nearest(self, vector: Any, where: Where, limit: int) -> list[Hit]:
        self.requests.append(("nearest", {"where": where, "limit": limit}))
        return self._store.nearest(vector, where, limit)

    def hybrid(
        self, dense: list[float], sparse: SparseVector, where: Where, limit: int, prefetch: int
    ) -> list[Hit]:
        self.requests.append(("hybrid", {"where": where, "limit": limit, "prefetch": prefetch}))
        return self._store.hybrid(dense, sparse, where, limit, prefetch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_hybrid_is_one_filtered_request_to_either_engine(
    store: PolicyStore, embedder: Embedder, ingest: Ingest, write_doc: WriteDoc
) -> None:
    ingest(write_doc("reefer.md", REEFER), write_doc("hazmat.txt", HAZMAT))
    recording = RecordingStore(store)
    search = PolicySearch(recording, embedder, prefetch_limit=7)  # type: ignore[arg-type]

    results = search.search("ice cream temperature", k=2, as_of=date(2026, 6, 1))

    # Twice k, so that points tied at the cut are ordered the same way every time.
    assert recording.requests == [
        (
            "hybrid",
            {"where": Where.visible(date(2026, 6, 1), None), "limit": 4, "prefetch": 7},
        )
    ]
    assert results[0].doc_id == "reefer-temperature"
    assert len(results) == 2


def test_the_same_question_gets_the_same_sources_every_time(
    ingest: Ingest, policy_search: PolicySearch
) -> None:
    """Fused scores tie often, and Qdrant Edge returns tied points in either order from one
    query to the next: the search orders ties itself."""
    ingest(*collect_files([SAMPLE_POLICIES]))
    question = "Which placards does a hazmat load need, and who approves a hazmat load?"

    runs = {tuple(r.chunk_id for r in policy_search.search(question, k=3)) for _ in range(20)}

    assert len(runs) == 1
    assert len(next(iter(runs))) == 3


def test_similarities_are_the_models_cosines_whether_passages_are_new_or_seen(
    policy_search: PolicySearch, embedder: Embedder
) -> None:
    question = "who approves a 30,000 lb load?"
    passages = [
        "The shift lead on duty approves loads from 26,001 to 40,000 lb.",
        "Reefer setpoints are checked at every stop.",
        "The shift lead on duty approves loads from 26,001 to 40,000 lb.",  # twice
    ]
    query, *vectors = embedder.encode_on_answer_path([question, *passages])
    expected = [sum(q * v for q, v in zip(query, vector, strict=True)) for vector in vectors]

    first = policy_search.similarities(question, passages)
    again = policy_search.similarities(question, passages)  # the passages' vectors are kept

    assert first == again
    assert first == pytest.approx(expected, abs=1e-6)
    assert first[0] == first[2] > first[1]
