"""Retrieval at growing corpus sizes: search latency per mode and ingest throughput.

For each size, a fresh collection in qdrant-client's local mode on disk (the product's
default store) is filled with a synthetic policy corpus (bench/corpus.py), searched, then
updated:

- Ingest. Embedding is measured once, for real, on `--embed-limit` chunks (all-MiniLM on
  this CPU is far too slow to embed 50,000). Indexing is measured at every size: Markdown
  files loaded and chunked, BM25 vectors and payloads built, points upserted one document
  at a time, with the functions `ingest_files` uses. Its dense vectors are the embedded
  ones, reused with a little noise past the limit: what indexing and search cost does not
  depend on the vectors' values. Ingest chunks/s = chunks / (embedding time at the measured
  rate + indexing time).
- That bulk load skips two things `ingest_files` does per document: delete a version's
  leftovers and refresh the versions' end dates. Each is a filtered scan, which local mode
  (no payload indexes) runs over every point. "update" measures them through the real
  `ingest_files`: a few new documents into the full collection, embedding included.
- Search: `PolicySearch.search` per mode (hybrid, dense, sparse), as the bot calls it, with
  the query's embedding timed apart so the search-only time shows.

Local mode on disk commits every point to SQLite on its own, so the disk's sync time bounds
ingest; search runs on arrays in memory, as in-memory local mode does.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bench.report import REPO_ROOT, BenchResult, Table, latency_summary, ratio

if TYPE_CHECKING:
    import numpy as np
    from qdrant_client import QdrantClient

    from retrieval.chunking import ChunkingOptions
    from retrieval.embedding import Embedder
    from store.settings import Settings

HELP = (
    "Retrieval: search latency (hybrid, dense, sparse) and ingest chunks/s at growing corpus "
    "sizes, in Qdrant local mode"
)
SIZES, QUICK_SIZES = (1_000, 10_000, 50_000), (200, 1_000)
QUERIES, QUICK_QUERIES = 20, 5
EMBED_LIMIT, QUICK_EMBED_LIMIT = 2_000, 200
UPDATE_CHUNKS = 40
NOISE = 0.02  # per dimension: a reused vector stays within cosine ~0.93 of the original
SEED = 0
COLLECTION = "policies"
EVAL_SETS = (
    REPO_ROOT / "examples" / "eval" / "retrieval.jsonl",
    REPO_ROOT / "examples" / "eval" / "unanswerable.jsonl",
)
GROWTH_COLUMNS = (
    "chunks",
    "files",
    "terms",
    "ingest chunks/s",
    "index chunks/s",
    "update ms/doc",
    "hybrid p50 ms",
    "hybrid p95 ms",
    "dense p50 ms",
    "dense p95 ms",
    "sparse p50 ms",
    "sparse p95 ms",
)
SEARCH_COLUMNS = (
    "chunks",
    "mode",
    "queries",
    "total p50 ms",
    "total p95 ms",
    "query embed p50 ms",
    "search-only p50 ms",
    "search-only p95 ms",
    "results/query",
)
INGEST_COLUMNS = (
    "chunks",
    "embed s (est.)",
    "load+chunk s",
    "vectors+payload s",
    "upsert s",
    "upsert ms/chunk",
    "index chunks/s",
    "ingest chunks/s",
    "update docs",
    "update embed ms/doc",
    "update index ms/doc",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        help="corpus sizes in chunks, comma-separated "
        f"({_listed(SIZES)}; {_listed(QUICK_SIZES)} with --quick)",
    )
    parser.add_argument(
        "--queries",
        type=_positive,
        default=None,
        help=f"timed queries per mode and size ({QUERIES}; {QUICK_QUERIES} with --quick): "
        "the questions of examples/eval, alternating with questions about the synthetic corpus",
    )
    parser.add_argument(
        "--embed-limit",
        type=_positive,
        default=None,
        help=f"chunks really embedded to measure embedding speed ({EMBED_LIMIT}; "
        f"{QUICK_EMBED_LIMIT} with --quick); larger collections reuse their vectors",
    )
    parser.add_argument(
        "--update-chunks",
        type=_positive,
        default=UPDATE_CHUNKS,
        help=f"chunks of new documents ingested through ingest_files into each full "
        f"collection ({UPDATE_CHUNKS})",
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"corpus seed ({SEED})")


@dataclass(frozen=True)
class _Plan:
    sizes: tuple[int, ...]
    queries: int
    embed_limit: int
    update_chunks: int
    seed: int


@dataclass
class _Stopwatch:
    """Seconds spent per phase, added up over many short spans."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class _Bulk:
    files: int  # one per document version
    chunks: int
    terms: int  # distinct sparse terms: the keyword index's vocabulary
    seconds: dict[str, float]

    @property
    def index_s(self) -> float:
        return sum(self.seconds.values())


@dataclass(frozen=True)
class _Update:
    documents: int
    embed_s: float
    total_s: float


@dataclass(frozen=True)
class _ModeLatency:
    total_ms: list[float]
    embed_ms: list[float]
    results: int

    @property
    def search_only_ms(self) -> list[float]:
        return [total - embed for total, embed in zip(self.total_ms, self.embed_ms, strict=True)]


@dataclass(frozen=True)
class _SizeResult:
    bulk: _Bulk
    update: _Update
    latency: dict[str, _ModeLatency]  # by search mode


class _TimedQueryEncoder:
    """Stands in for the Embedder in PolicySearch, which only calls `encode_query`: the real
    model encodes, and the time it took is kept, so the search-only time is the rest."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self.last_ms = 0.0

    def encode_query(self, text: str) -> list[float]:
        start = time.perf_counter()
        vector = self._embedder.encode_query(text)
        self.last_ms = (time.perf_counter() - start) * 1000
        return vector


def run(args: argparse.Namespace) -> BenchResult:
    from retrieval.chunking import ChunkingOptions
    from retrieval.embedding import load_embedder_for
    from store.settings import Settings

    plan = _plan(args)
    # A developer's .env must not change what is measured; the store is set per size below.
    settings = Settings(_env_file=None)
    embedder = load_embedder_for(settings)
    chunking = ChunkingOptions(
        min(settings.chunk_max_tokens, embedder.max_tokens), settings.chunk_overlap_tokens
    )
    queries = _queries(plan.queries, plan.seed)
    # Local mode warns once it holds 20,000 points; this benchmark knows, and says so.
    with (
        tempfile.TemporaryDirectory(prefix="bench-retrieval-") as folder,
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message="Local mode is not recommended")
        scratch = Path(folder)
        pool, embed_rate = _embed_pool(embedder, settings, plan)
        results = [
            _measure_size(size, scratch, settings, embedder, chunking, pool, queries, plan)
            for size in plan.sizes
        ]
    return _result(plan, settings, embedder, chunking, embed_rate, len(pool), results)


def _plan(args: argparse.Namespace) -> _Plan:
    def pick(given: Any, full: Any, quick: Any) -> Any:
        return given if given is not None else (quick if args.quick else full)

    return _Plan(
        sizes=tuple(sorted(pick(args.sizes, SIZES, QUICK_SIZES))),
        queries=pick(args.queries, QUERIES, QUICK_QUERIES),
        embed_limit=pick(args.embed_limit, EMBED_LIMIT, QUICK_EMBED_LIMIT),
        update_chunks=args.update_chunks,
        seed=args.seed,
    )


def _queries(count: int, seed: int) -> list[str]:
    """The eval set's questions alternating with questions about the synthetic corpus."""
    from bench.corpus import synthetic_queries

    labelled = [
        json.loads(line)["question"]
        for path in EVAL_SETS
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    synthetic = synthetic_queries(count, seed)
    mixed = [query for pair in zip(labelled, synthetic, strict=False) for query in pair]
    return (mixed + synthetic[len(mixed) // 2 :])[:count]


def _embed_pool(embedder: Embedder, settings: Settings, plan: _Plan) -> tuple[np.ndarray, float]:
    """Embed the first `embed_limit` chunks as ingest does; the vectors and chunks/s."""
    import numpy as np

    from bench.corpus import synthetic_chunk_texts

    texts = synthetic_chunk_texts(min(plan.embed_limit, max(plan.sizes)), plan.seed)
    embedder.encode_documents(texts[:8])  # first call sets up the model's buffers
    start = time.perf_counter()
    vectors = embedder.encode_documents(texts, batch_size=settings.embedding_batch_size)
    seconds = time.perf_counter() - start
    return np.asarray(vectors, dtype=np.float32), len(texts) / seconds


def _measure_size(
    size: int,
    scratch: Path,
    settings: Settings,
    embedder: Embedder,
    chunking: ChunkingOptions,
    pool: np.ndarray,
    queries: Sequence[str],
    plan: _Plan,
) -> _SizeResult:
    """A fresh collection of `size` chunks in the default store: bulk index, search, update."""
    from bench.corpus import synthetic_documents, write_markdown
    from retrieval.client import open_qdrant

    files = write_markdown(synthetic_documents(size, plan.seed), scratch / f"docs-{size}")
    updates = write_markdown(
        synthetic_documents(plan.update_chunks, plan.seed + 1, id_prefix="update-"),
        scratch / f"updates-{size}",
    )
    store = scratch / f"qdrant-{size}"
    # The product's default store: local mode on disk (no QDRANT_URL), opened as the app does.
    local = settings.model_copy(update={"qdrant_url": None, "qdrant_path": store})
    with open_qdrant(local) as client:
        bulk = _bulk_index(client, files, embedder, chunking, pool, plan.seed)
        latency = _search_latency(client, embedder, settings, queries)
        update = _update(client, updates, embedder, chunking, settings)
    shutil.rmtree(store, ignore_errors=True)
    return _SizeResult(bulk, update, latency)


def _bulk_index(
    client: QdrantClient,
    files: Sequence[Path],
    embedder: Embedder,
    chunking: ChunkingOptions,
    pool: np.ndarray,
    seed: int,
) -> _Bulk:
    """Index every file as `ingest_files` writes a new version, minus its filtered scans."""
    import numpy as np

    from retrieval.chunking import chunk_document
    from retrieval.collection import SPARSE_VECTOR, ensure_collection
    from retrieval.ingest import (
        index_signature,
        new_version_record,
        upsert_points,
        version_points,
    )
    from retrieval.loaders import load_document

    noise = np.random.default_rng(seed)
    signature = index_signature(embedder.name, chunking)
    ingested_at = datetime.now(UTC)
    watch = _Stopwatch()
    terms: set[int] = set()
    chunk_count = 0
    ensure_collection(client, COLLECTION, embedder.dimension, embedder.name)
    for path in files:
        with watch.phase("load+chunk"):
            document = load_document(path)
            chunks = chunk_document(document, chunking, embedder.count_tokens)
        dense = _pool_vectors(pool, chunk_count, len(chunks), noise)
        chunk_count += len(chunks)
        with watch.phase("vectors+payload"):
            record = new_version_record(document, [], ingested_at.date(), signature)
            points = version_points(record, chunks, dense, ingested_at)
        for point in points:
            terms.update(point.vector[SPARSE_VECTOR].indices)
        with watch.phase("upsert"):
            upsert_points(client, COLLECTION, points)
    return _Bulk(len(files), chunk_count, len(terms), watch.seconds)


def _pool_vectors(
    pool: np.ndarray, first: int, count: int, noise: np.random.Generator
) -> list[list[float]]:
    """Chunk i's own vector while the pool lasts, then a pool vector with noise, re-normed."""
    import numpy as np

    positions = np.arange(first, first + count)
    vectors = pool[positions % len(pool)].copy()
    reused = positions >= len(pool)
    vectors[reused] += noise.normal(0, NOISE, (int(reused.sum()), pool.shape[1]))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.tolist()


def _search_latency(
    client: QdrantClient, embedder: Embedder, settings: Settings, queries: Sequence[str]
) -> dict[str, _ModeLatency]:
    """Each query in every mode in turn, so load from outside falls on all modes alike."""
    from retrieval.search import PolicySearch, SearchMode

    encoder = _TimedQueryEncoder(embedder)
    search = PolicySearch(
        client,
        COLLECTION,
        cast("Embedder", encoder),
        prefetch_limit=settings.search_prefetch_limit,
    )
    for mode in SearchMode:  # untimed: the first search of a mode sets things up
        search.search(queries[0], k=settings.search_k, mode=mode)
    timings: dict[SearchMode, tuple[list[float], list[float]]] = {
        mode: ([], []) for mode in SearchMode
    }
    results = dict.fromkeys(SearchMode, 0)
    for query in queries:
        for mode in SearchMode:
            start = time.perf_counter()
            found = search.search(query, k=settings.search_k, mode=mode)
            timings[mode][0].append((time.perf_counter() - start) * 1000)
            timings[mode][1].append(encoder.last_ms)
            results[mode] += len(found)
    return {
        mode.value: _ModeLatency(total, embed, results[mode])
        for mode, (total, embed) in timings.items()
    }


def _update(
    client: QdrantClient,
    files: Sequence[Path],
    embedder: Embedder,
    chunking: ChunkingOptions,
    settings: Settings,
) -> _Update:
    """A batch of new documents through the real `ingest_files`, into the full collection."""
    from retrieval.ingest import ingest_files

    progress: list[float] = []  # ingest reports before the first batch and after each
    start = time.perf_counter()
    ingest_files(
        files,
        client=client,
        collection=COLLECTION,
        embedder=embedder,
        chunking=chunking,
        batch_size=settings.embedding_batch_size,
        on_progress=lambda _done, _total: progress.append(time.perf_counter()),
    )
    total_s = time.perf_counter() - start
    embed_s = progress[-1] - progress[0] if progress else 0.0
    return _Update(len(files), embed_s, total_s)


def _result(
    plan: _Plan,
    settings: Settings,
    embedder: Embedder,
    chunking: ChunkingOptions,
    embed_rate: float,
    embedded: int,
    results: list[_SizeResult],
) -> BenchResult:
    growth, searches = [], []
    for result in results:
        bulk = result.bulk
        summaries = {mode: latency_summary(lat.total_ms) for mode, lat in result.latency.items()}
        growth.append(
            [
                bulk.chunks,
                bulk.files,
                bulk.terms,
                _ingest_rate(bulk, embed_rate),
                bulk.chunks / bulk.index_s,
                result.update.total_s * 1000 / result.update.documents,
                *(summaries[mode][q] for mode in summaries for q in ("p50", "p95")),
            ]
        )
        for mode, lat in result.latency.items():
            only = latency_summary(lat.search_only_ms)
            searches.append(
                [
                    bulk.chunks,
                    mode,
                    len(lat.total_ms),
                    summaries[mode]["p50"],
                    summaries[mode]["p95"],
                    latency_summary(lat.embed_ms)["p50"],
                    only["p50"],
                    only["p95"],
                    lat.results / len(lat.total_ms),
                ]
            )
    ingests = [_ingest_row(result.bulk, result.update, embed_rate) for result in results]
    return BenchResult(
        name="retrieval",
        title="Retrieval: search latency and ingest throughput as the corpus grows",
        tables=[
            Table(
                "Growth with corpus size (search latency: PolicySearch.search, end to end)",
                GROWTH_COLUMNS,
                growth,
            ),
            Table(
                "Search latency by mode: total = query embedding + search-only",
                SEARCH_COLUMNS,
                searches,
            ),
            Table(
                "Ingest: embedding (estimated at the measured rate) and indexing, in seconds",
                INGEST_COLUMNS,
                ingests,
            ),
        ],
        findings=_findings(results, embed_rate, embedded),
        config={
            "sizes": list(plan.sizes),
            "queries_per_mode": plan.queries,
            "embed_limit": plan.embed_limit,
            "seed": plan.seed,
            "update_chunks": plan.update_chunks,
            "vector_noise_per_dimension": NOISE,
            "embedding_model": embedder.name,
            "embedding_backend": settings.embedding_backend,
            "embedding_batch_size": settings.embedding_batch_size,
            "chunk_max_tokens": chunking.max_tokens,
            "chunk_overlap_tokens": chunking.overlap_tokens,
            "search_k": settings.search_k,
            "search_prefetch_limit": settings.search_prefetch_limit,
            "store": "qdrant-client local mode on disk (brute force), fresh per size",
        },
        notes=_notes(embedded, plan.update_chunks),
    )


def _notes(embedded: int, update_chunks: int) -> list[str]:
    return [
        f"Embedding was measured on {embedded} chunks; larger collections reuse those vectors "
        "with noise, since search and indexing cost do not depend on the vectors' values.",
        "Upserts into local mode on disk (the product's default store) commit each point to "
        "SQLite on its own, so the disk's sync time (about 1 ms idle, 10-20 ms busy here) "
        "bounds ingest; searches use the same in-memory arrays as in-memory local mode.",
        "Local mode is brute force (every point scored, filters evaluated in Python) and "
        "warns above 20,000 points; production uses a Qdrant server (QDRANT_URL) with HNSW "
        "and payload indexes, where these latencies do not apply.",
        "The bulk index does ingest_files' work per chunk but not its two filtered scans per "
        f"document; 'update ms/doc' is the real ingest_files of {update_chunks} chunks of new "
        "documents into the full collection, embedding included.",
    ]


def _ingest_rate(bulk: _Bulk, embed_rate: float) -> float:
    """Chunks/s of a whole ingest: embedding at the measured rate, then indexing."""
    return bulk.chunks / (bulk.chunks / embed_rate + bulk.index_s)


def _ingest_row(bulk: _Bulk, update: _Update, embed_rate: float) -> list[Any]:
    update_embed_s = update.embed_s / update.documents
    return [
        bulk.chunks,
        bulk.chunks / embed_rate,
        bulk.seconds["load+chunk"],
        bulk.seconds["vectors+payload"],
        bulk.seconds["upsert"],
        bulk.seconds["upsert"] * 1000 / bulk.chunks,
        bulk.chunks / bulk.index_s,
        _ingest_rate(bulk, embed_rate),
        update.documents,
        update_embed_s * 1000,
        update.total_s * 1000 / update.documents - update_embed_s * 1000,
    ]


def _findings(results: list[_SizeResult], embed_rate: float, embedded: int) -> dict[str, Any]:
    first, last = results[0], results[-1]
    span = f"{last.bulk.chunks}_vs_{first.bulk.chunks}"
    findings: dict[str, Any] = {
        "embed_chunks_per_s": embed_rate,
        "embed_measured_on_chunks": embedded,
        "largest_chunks": last.bulk.chunks,
        "largest_terms": last.bulk.terms,
    }
    for mode, lat in last.latency.items():
        findings[f"{mode}_p50_ms_at_largest"] = latency_summary(lat.total_ms)["p50"]
    for mode in last.latency:
        findings[f"{mode}_search_only_p50_growth_{span}"] = ratio(
            latency_summary(last.latency[mode].search_only_ms)["p50"],
            latency_summary(first.latency[mode].search_only_ms)["p50"],
        )
    findings[f"index_chunks_per_s_ratio_{span}"] = ratio(
        last.bulk.chunks / last.bulk.index_s, first.bulk.chunks / first.bulk.index_s
    )
    findings[f"update_index_ms_per_doc_growth_{span}"] = ratio(
        last.update.total_s - last.update.embed_s, first.update.total_s - first.update.embed_s
    )
    return findings


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(_positive(part) for part in text.split(",") if part.strip())
    if not sizes:
        raise argparse.ArgumentTypeError("expected chunk counts like 1000,10000")
    return sizes


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _listed(sizes: Sequence[int]) -> str:
    return ",".join(str(size) for size in sizes)
