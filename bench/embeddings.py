"""Embeddings: the default model run by torch, by ONNX Runtime in fp32, and in int8.

For each backend of `--backends`:

- Load: the model is loaded with an empty export folder of its own, so for the ONNX
  backends that includes exporting, checking and, for int8, the fp32 export and
  quantizing ("first load"); then a fresh Python process loads it from that export, as
  every later start does ("load"). Imports (torch, transformers) are timed apart: they
  are the same for every backend.
- Documents/s: `Embedder.encode_documents` in batches of 32, as ingest calls it, on the
  chunks of examples/policies made by the real chunker with the default chunk settings,
  repeated to `--texts` texts.
- Queries: `Embedder.encode_query` one at a time, as the bot embeds a question, on the
  questions of examples/eval.
- Timings are taken in `--repeat` rounds with the backends interleaved within each round,
  so that load from other processes falls on all of them alike; the median is reported.
- Agreement: cosine distance (1 - cosine similarity) and largest per-component difference
  of each backend's unit vectors (documents and questions) to torch's.
- Quality: examples/policies ingested with `ingest_files` into in-memory Qdrant and the
  labelled questions scored with `evaluate_retrieval`, as `dispatchbot evaluate retrieval`
  does; and the backend's questions searched in the index torch built, which is what
  switching EMBEDDING_BACKEND without ingesting again gives. With --quick only the
  documents that the few questions asked are about are ingested.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report import REPO_ROOT, BenchResult, Table, latency_summary, ratio
from retrieval.embedding import EMBEDDING_BACKENDS as BACKENDS

if TYPE_CHECKING:
    import numpy as np

    from retrieval.embedding import Embedder
    from retrieval.evaluate import LabelledQuestion
    from retrieval.search import PolicySearch, SearchMode
    from retrieval.store import PolicyStore
    from store.settings import Settings

HELP = (
    "Embeddings: load time, documents/s and query latency of the default model with torch, "
    "ONNX and ONNX int8, their vectors' agreement with torch's and recall@5/MRR on "
    "examples/eval"
)
TEXTS, QUICK_TEXTS = 384, 32
REPEAT, QUICK_REPEAT = 3, 1
QUICK_QUESTIONS = 8
POLICIES = REPO_ROOT / "examples" / "policies"
LABELLED_SET = REPO_ROOT / "examples" / "eval" / "retrieval.jsonl"
COLLECTION = "policies"
SPEED_COLUMNS = (
    "backend",
    "import s",
    "first load s",
    "load s",
    "docs/s",
    "docs/s vs torch",
    "query p50 ms",
    "query p95 ms",
    "queries/s",
    "queries/s vs torch",
)
QUALITY_COLUMNS = (
    "backend",
    "max 1-cos",
    "mean 1-cos",
    "max |diff|",
    "hybrid recall@5",
    "hybrid MRR",
    "dense recall@5",
    "dense MRR",
    "hybrid recall@5 on torch's index",
)

# Run in a fresh interpreter, so that the load is timed as a process start sees it.
_LOAD_SCRIPT = """
import json, sys, time
from pathlib import Path
started = time.perf_counter()
import sentence_transformers, torch  # noqa: F401 - timed apart from the load
from retrieval.embedding import open_embedder
imported = time.perf_counter()
open_embedder(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
print(json.dumps({"import_s": imported - started, "load_s": time.perf_counter() - imported}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backends",
        type=_backend_list,
        default=BACKENDS,
        help=f"comma-separated, from {', '.join(BACKENDS)} (default: all; torch is the "
        "reference for the ratios and the agreement)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help=f"timed rounds per backend, interleaved (default {REPEAT}, {QUICK_REPEAT} with "
        "--quick)",
    )
    parser.add_argument(
        "--texts",
        type=int,
        default=None,
        help=f"chunks encoded per round (default {TEXTS}, {QUICK_TEXTS} with --quick)",
    )


def _backend_list(value: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [name for name in chosen if name not in BACKENDS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(BACKENDS)}")
    return chosen


@dataclass
class _Measured:
    """One backend's figures; timings hold one entry per round."""

    backend: str
    embedder: Embedder
    import_s: float
    first_load_s: float
    load_s: float
    docs_per_s: list[float] = field(default_factory=list)
    query_ms: list[float] = field(default_factory=list)
    queries_per_s: list[float] = field(default_factory=list)
    vectors: np.ndarray | None = None  # the last round's, documents then questions
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)  # mode: recall@5, MRR
    recall_on_torch_index: float | None = None


def run(args: argparse.Namespace) -> BenchResult:
    import sentence_transformers  # noqa: F401 - imported before any load is timed

    from retrieval.embedding import open_embedder
    from retrieval.evaluate import read_labelled_set
    from store.settings import Settings

    settings = Settings(_env_file=None)  # a developer's .env must not change what is measured
    repeat = args.repeat or (QUICK_REPEAT if args.quick else REPEAT)
    count = args.texts or (QUICK_TEXTS if args.quick else TEXTS)
    if repeat < 1 or count < 1:
        raise ValueError("--repeat and --texts must be at least 1")
    questions = read_labelled_set(LABELLED_SET)
    if args.quick:
        questions = questions[:QUICK_QUESTIONS]
    name = settings.embedding_model
    with tempfile.TemporaryDirectory(prefix="bench-embeddings-") as folder:
        measured = []
        for backend in args.backends:
            exports = Path(folder) / backend  # empty: the first load of an ONNX backend exports
            start = time.perf_counter()
            embedder = open_embedder(name, backend, exports)
            first_load_s = time.perf_counter() - start
            later = _later_start(name, backend, exports)
            measured.append(_Measured(backend, embedder, first_load_s=first_load_s, **later))
        texts = _chunk_texts(measured[0].embedder, settings, count)
        for _ in range(repeat):
            for entry in measured:
                _time_round(entry, texts, [q.question for q in questions])
        _score(measured, settings, questions, _policy_files(questions, args.quick))
    return _result(measured, settings, repeat, len(texts), len(questions))


def _later_start(name: str, backend: str, exports: Path) -> dict[str, float]:
    """Seconds a fresh process takes to import, then to load from the export."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _LOAD_SCRIPT, name, backend, str(exports)],
        cwd=REPO_ROOT,
        env=os.environ | {"PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loading {name} with {backend} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _policy_files(questions: list[LabelledQuestion], quick: bool) -> list[Path]:
    """examples/policies; with --quick only the documents the questions are about."""
    from retrieval.loaders import collect_files, load_document

    files = collect_files([POLICIES])
    if not quick:
        return files
    wanted = {question.doc_id for question in questions}
    return [path for path in files if load_document(path).doc_id in wanted]


def _chunk_texts(embedder: Embedder, settings: Settings, count: int) -> list[str]:
    """What ingest embeds for examples/policies, repeated (or cut) to `count` texts."""
    from retrieval.chunking import ChunkingOptions, chunk_document
    from retrieval.loaders import collect_files, load_document

    chunking = ChunkingOptions(
        min(settings.chunk_max_tokens, embedder.max_tokens), settings.chunk_overlap_tokens
    )
    chunks = [
        chunk.embedding_text()
        for path in collect_files([POLICIES])
        for chunk in chunk_document(load_document(path), chunking, embedder.count_tokens)
    ]
    return [chunks[index % len(chunks)] for index in range(count)]


def _time_round(entry: _Measured, texts: Sequence[str], questions: Sequence[str]) -> None:
    import numpy as np

    embedder = entry.embedder
    embedder.encode_documents(texts[:8])  # the first call sets up buffers; not timed
    start = time.perf_counter()
    vectors = embedder.encode_documents(texts, batch_size=32)
    entry.docs_per_s.append(len(texts) / (time.perf_counter() - start))
    query_vectors = []
    round_start = time.perf_counter()
    for question in questions:
        start = time.perf_counter()
        query_vectors.append(embedder.encode_query(question))
        entry.query_ms.append((time.perf_counter() - start) * 1000)
    entry.queries_per_s.append(len(questions) / (time.perf_counter() - round_start))
    entry.vectors = np.asarray([*vectors, *query_vectors], dtype=np.float32)


def _score(
    measured: list[_Measured],
    settings: Settings,
    questions: list[LabelledQuestion],
    files: list[Path],
) -> None:
    """Recall and MRR of each backend on its own index, and on torch's when torch ran."""
    from retrieval.search import PolicySearch, SearchMode

    torch_store: PolicyStore | None = None
    try:
        for entry in measured:
            store = _ingested(entry.embedder, settings, files)
            search = PolicySearch(store, entry.embedder, settings.search_prefetch_limit)
            entry.scores = _evaluate(search, questions, (SearchMode.HYBRID, SearchMode.DENSE))
            if entry.backend == "torch":
                torch_store = store
            else:
                store.close()
        for entry in measured:
            if torch_store is not None:
                search = PolicySearch(torch_store, entry.embedder, settings.search_prefetch_limit)
                hybrid = _evaluate(search, questions, (SearchMode.HYBRID,))
                entry.recall_on_torch_index = hybrid[SearchMode.HYBRID.value][0]
    finally:
        if torch_store is not None:
            torch_store.close()


def _ingested(embedder: Embedder, settings: Settings, files: list[Path]) -> PolicyStore:
    from qdrant_client import QdrantClient

    from retrieval.chunking import ChunkingOptions
    from retrieval.ingest import ingest_files
    from retrieval.server_store import ServerStore

    store = ServerStore(QdrantClient(":memory:"), COLLECTION, "memory")
    ingest_files(
        files,
        store=store,
        embedder=embedder,
        chunking=ChunkingOptions(settings.chunk_max_tokens, settings.chunk_overlap_tokens),
        batch_size=settings.embedding_batch_size,
    )
    return store


def _evaluate(
    search: PolicySearch, questions: list[LabelledQuestion], modes: Sequence[SearchMode]
) -> dict[str, tuple[float, float]]:
    from retrieval.evaluate import evaluate_retrieval

    return {
        score.mode.value: (score.recall_at_5, score.mrr)
        for score in evaluate_retrieval(search, questions, modes=modes, k=10)
    }


def _agreement(entry: _Measured, reference: _Measured | None) -> tuple[float, float, float]:
    """Largest and mean cosine distance to torch's vectors, and the largest component gap."""
    import numpy as np

    if entry is reference:
        return 0.0, 0.0, 0.0
    if reference is None or entry.vectors is None or reference.vectors is None:
        return float("nan"), float("nan"), float("nan")
    # float32 unit vectors: rounding alone can put a cosine a hair above 1.
    distances = np.clip(1 - (entry.vectors * reference.vectors).sum(axis=1), 0, None)
    difference = float(np.abs(entry.vectors - reference.vectors).max())
    return float(distances.max()), float(distances.mean()), difference


def _result(
    measured: list[_Measured], settings: Settings, repeat: int, texts: int, questions: int
) -> BenchResult:
    reference = next((entry for entry in measured if entry.backend == "torch"), None)
    docs = {entry.backend: statistics.median(entry.docs_per_s) for entry in measured}
    queries = {entry.backend: statistics.median(entry.queries_per_s) for entry in measured}
    speed_rows = []
    quality_rows = []
    findings: dict[str, Any] = {}
    for entry in measured:
        latency = latency_summary(entry.query_ms)
        docs_ratio = ratio(docs[entry.backend], docs["torch"]) if reference else float("nan")
        queries_ratio = (
            ratio(queries[entry.backend], queries["torch"]) if reference else float("nan")
        )
        speed_rows.append(
            [
                entry.backend,
                round(entry.import_s, 2),
                round(entry.first_load_s, 2),
                round(entry.load_s, 2),
                round(docs[entry.backend], 1),
                round(docs_ratio, 2),
                round(latency["p50"], 2),
                round(latency["p95"], 2),
                round(queries[entry.backend], 1),
                round(queries_ratio, 2),
            ]
        )
        worst, mean, gap = _agreement(entry, reference)
        hybrid, dense = entry.scores["hybrid"], entry.scores["dense"]
        on_torch = entry.recall_on_torch_index
        quality_rows.append(
            [
                entry.backend,
                worst,
                mean,
                gap,
                round(hybrid[0], 3),
                round(hybrid[1], 3),
                round(dense[0], 3),
                round(dense[1], 3),
                float("nan") if on_torch is None else round(on_torch, 3),
            ]
        )
        if reference and entry is not reference:
            findings[f"{entry.backend} docs/s vs torch"] = round(docs_ratio, 2)
            findings[f"{entry.backend} queries/s vs torch"] = round(queries_ratio, 2)
            findings[f"{entry.backend} recall@5 holds"] = (
                hybrid[0] >= reference.scores["hybrid"][0]
                and dense[0] >= reference.scores["dense"][0]
            )
    return BenchResult(
        name="embeddings",
        title=f"Embeddings: {settings.embedding_model} by backend",
        tables=[
            Table(
                f"Speed ({texts} chunks of examples/policies in batches of 32; {questions} "
                f"questions one at a time; median of {repeat} rounds)",
                SPEED_COLUMNS,
                speed_rows,
            ),
            Table(
                f"Agreement with torch and retrieval quality ({questions} labelled questions, "
                "examples/policies in in-memory Qdrant)",
                QUALITY_COLUMNS,
                quality_rows,
            ),
        ],
        findings=findings,
        config={
            "model": settings.embedding_model,
            "backends": [entry.backend for entry in measured],
            "texts": texts,
            "questions": questions,
            "repeat": repeat,
            "batch_size": 32,
            "chunk_max_tokens": settings.chunk_max_tokens,
            "chunk_overlap_tokens": settings.chunk_overlap_tokens,
        },
        notes=[
            "first load: with an empty export folder, so for onnx it includes the export and "
            "its check, for onnx-int8 the fp32 export and the quantization too; load: a fresh "
            "process loading from that export, as every later start (imports not included)",
            "recall@5 holds: hybrid and dense recall@5 not below torch's on the same questions",
        ],
    )
