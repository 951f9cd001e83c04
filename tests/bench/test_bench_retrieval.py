"""The retrieval benchmark at its tiniest, and the synthetic corpus it searches: the same for
a seed, varied like a real collection, and ingestible through the product's real path."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench_support import run_part
from qdrant_client import QdrantClient

import bench.retrieval_scale as retrieval_scale
from bench.corpus import (
    synthetic_chunk_texts,
    synthetic_documents,
    synthetic_queries,
    write_markdown,
)
from bench.report import BenchResult, write_result
from retrieval.chunking import ChunkingOptions
from retrieval.embedding import load_embedder
from retrieval.ingest import FileStatus, ingest_files
from retrieval.loaders import load_document
from retrieval.search import PolicySearch, SearchMode
from retrieval.sparse import terms

SIZES = (100, 300)
QUERIES = 3
MODES = [mode.value for mode in SearchMode]


def _run() -> BenchResult:
    return run_part(
        retrieval_scale,
        [
            "--sizes",
            ",".join(map(str, SIZES)),
            "--queries",
            str(QUERIES),
            "--embed-limit",
            "40",
            "--update-chunks",
            "10",
        ],
    )


def _rows(result: BenchResult, title_start: str) -> list[dict[str, Any]]:
    (table,) = [table for table in result.tables if table.title.startswith(title_start)]
    return [dict(zip(table.columns, row, strict=True)) for row in table.rows]


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_growth_table_has_every_size_and_mode(tmp_path: Path) -> None:
    result = _run()

    growth = _rows(result, "Growth")
    assert [row["chunks"] for row in growth] == list(SIZES)
    for row in growth:
        assert row["terms"] > 0
        for mode in MODES:
            assert _positive(row[f"{mode} p50 ms"])
            assert row[f"{mode} p95 ms"] >= row[f"{mode} p50 ms"]
        for column in ("ingest chunks/s", "index chunks/s", "update ms/doc"):
            assert _positive(row[column]), column
        # A whole ingest is embedding plus indexing.
        assert row["ingest chunks/s"] < row["index chunks/s"]

    searches = _rows(result, "Search latency")
    assert [(row["chunks"], row["mode"]) for row in searches] == [
        (size, mode) for size in SIZES for mode in MODES
    ]
    for row in searches:
        assert row["queries"] == QUERIES
        assert row["results/query"] > 0  # the queries find chunks in every mode
        for column in ("total p50 ms", "query embed p50 ms", "search-only p50 ms"):
            assert _positive(row[column]), column
        assert row["search-only p50 ms"] < row["total p50 ms"]

    ingests = _rows(result, "Ingest")
    assert [row["chunks"] for row in ingests] == list(SIZES)
    assert all(row["update docs"] > 0 and _positive(row["upsert s"]) for row in ingests)

    assert _positive(result.findings["embed_chunks_per_s"])
    assert result.findings["embed_measured_on_chunks"] == 40
    assert _positive(result.findings["hybrid_search_only_p50_growth_300_vs_100"])

    written = json.loads(write_result(result, time.time(), tmp_path).read_text())
    assert written["name"] == "retrieval"
    assert written["config"]["sizes"] == list(SIZES)
    assert [table["rows"] for table in written["tables"]] == [
        json.loads(json.dumps([list(row) for row in table.rows])) for table in result.tables
    ]
    assert written["findings"].keys() == result.findings.keys()


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
    client = QdrantClient(":memory:")
    report = ingest_files(
        files,
        client=client,
        collection="policies",
        embedder=embedder,
        chunking=ChunkingOptions(max_tokens=256, overlap_tokens=32),
    )

    assert report.count(FileStatus.SKIPPED) == 0
    assert report.chunks_written == 40  # one chunk per section, as the benchmark counts
    found = PolicySearch(client, "policies", embedder).search(synthetic_queries(1, seed=5)[0])
    assert found
    client.close()
