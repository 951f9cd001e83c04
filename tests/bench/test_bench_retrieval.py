"""The retrieval benchmark at its tiniest, and the synthetic corpus it searches: the same for
a seed, varied like a real collection, and ingestible through the product's real path."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from bench_support import run_part

import bench.retrieval_scale as retrieval_scale
from bench.corpus import (
    synthetic_chunk_texts,
    synthetic_documents,
    synthetic_queries,
    write_markdown,
)
from bench.report import BenchResult, write_result
from retrieval.chunking import ChunkingOptions
from retrieval.edge_store import EdgeStore
from retrieval.embedding import load_embedder
from retrieval.ingest import FileStatus, ingest_files
from retrieval.loaders import load_document
from retrieval.search import PolicySearch, SearchMode
from retrieval.sparse import terms

SIZES = (100, 300)
QUERIES = 3
LOCAL_QUERIES = 2  # local mode above 100 chunks: the cap the full run uses at 100,000
ENGINES = ["edge", "local"]
MODES = [mode.value for mode in SearchMode]


def _run() -> BenchResult:
    """`python -m bench --quick retrieval`, smaller still."""
    return run_part(
        retrieval_scale,
        [
            "--sizes",
            ",".join(map(str, SIZES)),
            "--queries",
            str(QUERIES),
            "--local-full-up-to",
            "100",
            "--local-queries",
            str(LOCAL_QUERIES),
            "--embed-limit",
            "40",
            "--update-chunks",
            "10",
            "--per-doc-sample",
            "5",
        ],
    )


def _rows(document: dict[str, Any], title_start: str) -> list[dict[str, Any]]:
    (table,) = [table for table in document["tables"] if table["title"].startswith(title_start)]
    return [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _recall(value: Any) -> bool:
    return isinstance(value, int | float) and 0 <= value <= 1


@pytest.mark.slow  # a benchmark run on both engines
def test_both_engines_side_by_side_in_the_written_json(tmp_path: Path) -> None:
    result = _run()
    written = json.loads(write_result(result, time.time(), tmp_path).read_text())

    assert written["name"] == "retrieval"
    assert written["config"]["sizes"] == list(SIZES)
    assert sorted(written["config"]["engines"]) == sorted(ENGINES)
    assert written["config"]["queries_per_mode_by_engine"] == {
        "edge": {"100": QUERIES, "300": QUERIES},
        "local": {"100": QUERIES, "300": LOCAL_QUERIES},
    }
    queries = {("edge", 100): QUERIES, ("edge", 300): QUERIES}
    queries |= {("local", 100): QUERIES, ("local", 300): LOCAL_QUERIES}

    side = _rows(written, "Side by side")
    assert [(row["chunks"], row["engine"]) for row in side] == [
        (size, engine) for size in SIZES for engine in ENGINES
    ]
    for row in side:
        assert row["queries"] == queries[row["engine"], row["chunks"]]
        for mode in MODES:
            assert _positive(row[f"{mode} p50 ms"])
            assert row[f"{mode} p95 ms"] >= row[f"{mode} p50 ms"]
        for column in ("upsert pts/s", "upsert ms/doc", "update ms/doc", "disk MiB"):
            assert _positive(row[column]), column
        assert isinstance(row["RSS growth MiB"], int | float)
        assert _recall(row["dense recall@10"])
        if row["engine"] == "edge":
            assert _recall(row["hybrid recall@10"])
            assert row["optimize s"] >= 0
        else:
            assert row["hybrid recall@10"] is None  # exact by construction: not measured

    searches = _rows(written, "Search latency")
    assert [(row["chunks"], row["engine"], row["mode"]) for row in searches] == [
        (size, engine, mode) for size in SIZES for engine in ENGINES for mode in MODES
    ]
    for row in searches:
        assert row["queries"] == queries[row["engine"], row["chunks"]]
        assert row["results/query"] > 0  # the queries find chunks in every mode and engine
        for column in ("query embed p50 ms", "search p50 ms"):
            assert _positive(row[column]), column

    ingests = _rows(written, "Ingest")
    assert [(row["chunks"], row["engine"]) for row in ingests] == [
        (size, engine) for size in SIZES for engine in ENGINES
    ]
    for row in ingests:
        assert row["terms"] > 0
        for column in ("upsert s", "upsert pts/s", "index chunks/s", "ingest chunks/s (est.)"):
            assert _positive(row[column]), column
        # A whole ingest is embedding plus indexing.
        assert row["ingest chunks/s (est.)"] < row["index chunks/s"]

    updates = _rows(written, "Update")
    assert [(row["chunks"], row["engine"]) for row in updates] == [
        (size, engine) for size in SIZES for engine in ENGINES
    ]
    for row in updates:
        assert row["docs"] > 0
        assert _positive(row["total p50 ms"])
        assert _positive(row["embed ms/doc"])

    recalls = _rows(written, "Recall@10")
    for size in SIZES:
        edge = [row for row in recalls if (row["chunks"], row["engine"]) == (size, "edge")]
        settings = [row["search setting"] for row in edge]
        assert settings[0].startswith("default (")
        assert {str(ef) for ef in retrieval_scale.EF_SWEEP} <= set(settings)
        assert "exact" in settings
        for row in edge:
            assert row["queries"] == QUERIES
            assert _recall(row["dense recall@10"])
            assert _recall(row["hybrid recall@10"])
        exact = next(row for row in edge if row["search setting"] == "exact")
        # Edge's own exact search agrees with numpy's over the inserted vectors.
        assert exact["dense recall@10"] == exact["hybrid recall@10"] == 1
        (local,) = [row for row in recalls if (row["chunks"], row["engine"]) == (size, "local")]
        assert local["dense recall@10"] == 1  # local mode scores every point

    ratios = _rows(written, "Edge / local")
    assert [row["chunks"] for row in ratios] == list(SIZES)
    assert [row["queries compared"] for row in ratios] == [QUERIES, LOCAL_QUERIES]
    for row in ratios:
        for column in retrieval_scale.RATIO_COLUMNS[2:-1]:  # RSS growth may be zero
            assert _positive(row[column]), column

    findings = written["findings"]
    assert _positive(findings["embed_chunks_per_s"])
    assert findings["embed_measured_on_chunks"] == 40
    for size in SIZES:
        assert _recall(findings[f"edge_dense_recall_at_10_at_{size}"])
        assert _recall(findings[f"edge_hybrid_recall_at_10_at_{size}"])
        for engine in ENGINES:
            assert _positive(findings[f"{engine}_hybrid_search_p95_ms_at_{size}"])
    assert isinstance(findings["edge_recall_target_met"], bool)
    assert findings["edge_recall_target"] == retrieval_scale.RECALL_TARGET
    assert _positive(findings["edge_over_local_hybrid_p50_at_300"])
    assert any("Local mode ran 2 queries" in note for note in written["notes"])


def test_synthetic_corpus_is_deterministic_and_varied() -> None:
    documents = synthetic_documents(300, seed=3)

    assert documents == synthetic_documents(300, seed=3)
    assert documents != synthetic_documents(300, seed=4)
    assert sum(len(document.sections) for document in documents) == 300
    assert synthetic_queries(20, seed=3) == synthetic_queries(20, seed=3)
    assert len(set(synthetic_queries(20, seed=3))) == 20

    texts = synthetic_chunk_texts(300, seed=3)
    assert len(set(texts)) == 300
    frequency: Counter[str] = Counter()
    for text in texts:
        frequency.update(set(terms(text)))
    # The sample policies have ~1,300 terms in 187 chunks and no term in more than 55% of
    # them; a corpus of a few templates' words would have a few hundred, in most chunks.
    assert len(frequency) > 1_000
    assert frequency.most_common(1)[0][1] < 0.7 * len(texts)
    # New names and figures keep coming as the corpus grows, as in a real collection.
    larger: set[str] = set()
    for text in synthetic_chunk_texts(1_000, seed=3):
        larger.update(terms(text))
    assert len(larger) > 1.5 * len(frequency)
    # Some documents have an older, ended version as well as the one in force.
    versions = Counter(document.doc_id for document in synthetic_documents(2_000, seed=3))
    assert max(versions.values()) == 2


def test_synthetic_corpus_goes_in_through_ingest_files(tmp_path: Path) -> None:
    documents = synthetic_documents(40, seed=5)
    files = write_markdown(documents, tmp_path / "policies")
    for document, path in zip(documents, files, strict=True):
        loaded = load_document(path)
        assert (loaded.doc_id, loaded.title, loaded.sections, loaded.declared) == (
            document.doc_id,
            document.title,
            document.sections,
            document.declared,
        )

    embedder = load_embedder("all-MiniLM-L6-v2")
    store = EdgeStore(tmp_path / "edge", "policies")
    try:
        report = ingest_files(
            files,
            store=store,
            embedder=embedder,
            chunking=ChunkingOptions(max_tokens=256, overlap_tokens=32),
        )

        assert report.count(FileStatus.SKIPPED) == 0
        assert report.chunks_written == 40  # one chunk per section, as the benchmark counts
        found = PolicySearch(store, embedder).search(synthetic_queries(1, seed=5)[0])
        assert found
    finally:
        store.close()
