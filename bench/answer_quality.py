"""Answer quality on the labelled set (examples/eval/answers.jsonl): what people are shown and
what the model wrote, the policy passage chosen for each question, and where a relevance
threshold would put covered and uncovered questions.

The answering path is the assistant's own (retrieval, passage, prompt, model, verification)
over the sample policies ingested into an in-memory Qdrant, with a scratch store, so neither
the developer's collection nor their database is read or written.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from bench.report import REPO_ROOT, BenchResult, Table

if TYPE_CHECKING:
    from retrieval.search import PolicySearch, SearchResult
    from serving.answer_quality import AnswerQualityReport, Figures, LabelledQuestion
    from serving.passages import Passage
    from store.settings import Settings

HELP = "answer quality: facts, unsupported claims, repeats, refusals and time, shown vs model"
ANSWER_SET = REPO_ROOT / "examples" / "eval" / "answers.jsonl"
POLICIES = REPO_ROOT / "examples" / "policies"
QUICK_QUESTIONS = 7  # one of each kind
RELEVANCE_THRESHOLDS = (0.25, 0.30, 0.35, 0.40, 0.45, 0.50)
# The model's text under the settings of the previous release, beside today's defaults.
EARLIER_DECODING = {
    "answer_prompt_sources": 5,
    "llm_max_tokens": 256,
    "llm_repetition_penalty": 1.0,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--llm-url",
        default=None,
        help="a running vLLM's /v1 URL to use (default: start one of the bench's own)",
    )
    parser.add_argument(
        "--questions",
        type=int,
        default=None,
        help=f"labelled questions, each kind in turn (default all; --quick: {QUICK_QUESTIONS})",
    )
    parser.add_argument(
        "--file", type=Path, default=ANSWER_SET, help="the labelled set (JSON Lines)"
    )
    parser.add_argument(
        "--no-earlier",
        action="store_true",
        help="skip the second pass with the previous release's prompt and decoding settings",
    )


def run(args: argparse.Namespace) -> BenchResult:
    from qdrant_client import QdrantClient

    from bench.slack_harness import model_url
    from retrieval.chunking import ChunkingOptions
    from retrieval.embedding import load_embedder_for
    from retrieval.ingest import ingest_files
    from retrieval.loaders import collect_files
    from retrieval.search import PolicySearch
    from retrieval.server_store import ServerStore
    from serving.answer_quality import read_labelled_questions, spread
    from store.settings import Settings

    count = args.questions or (QUICK_QUESTIONS if args.quick else None)
    questions = spread(read_labelled_questions(args.file), count)
    with tempfile.TemporaryDirectory(prefix="dispatchbot-bench-") as folder:
        defaults = Settings(_env_file=None, data_dir=Path(folder))
        embedder = load_embedder_for(defaults)
        store = ServerStore(QdrantClient(":memory:"), defaults.qdrant_collection, "memory")
        ingest_files(
            collect_files([POLICIES]),
            store=store,
            embedder=embedder,
            chunking=ChunkingOptions(defaults.chunk_max_tokens, defaults.chunk_overlap_tokens),
        )
        search = PolicySearch(store, embedder, defaults.search_prefetch_limit)
        passage_rows = _passage_table(search, questions, defaults.search_k)
        coverage_rows = _coverage_table(search, questions, defaults.search_k)
        with model_url(args.llm_url) as llm_url:
            served = defaults.model_copy(update={"llm_base_url": llm_url})
            reports = {"defaults": _answer(search, questions, served)}
            if not args.no_earlier:
                earlier = served.model_copy(update=EARLIER_DECODING)
                reports["previous prompt and decoding"] = _answer(search, questions, earlier)
        store.close()
    return _result(reports, passage_rows, coverage_rows, questions, args)


def _answer(
    search: PolicySearch, questions: Sequence[LabelledQuestion], settings: Settings
) -> AnswerQualityReport:
    from bot.commands.evaluate import scratch_database, stored_support
    from bot.services import assistant_settings
    from serving.answer_quality import evaluate_answers
    from serving.assistant import Assistant, ThreadKey
    from serving.llm_client import ModelClient

    with scratch_database() as database:
        assistant = Assistant(
            search=search,
            model=ModelClient.from_settings(settings),
            database=database,
            settings=assistant_settings(settings),
        )
        # Not measured: the first answer pays first-use costs (the embedder's first batch).
        assistant.answer("who approves a load?", thread=ThreadKey("bench", "warm", "0"), user_id="")
        return evaluate_answers(assistant, questions, support_of=stored_support(database))


def _passage_table(
    search: PolicySearch, questions: Sequence[LabelledQuestion], k: int
) -> list[list[object]]:
    """How well each way of choosing the quoted words holds the expected facts."""
    from serving.passages import Passage, select_passage, split_blocks

    def whole_top(question: LabelledQuestion, results: list[SearchResult]) -> Passage | None:
        top = results[0] if results else None
        return Passage(top, tuple(split_blocks(top.text)), 1.0) if top else None

    def keywords(question: LabelledQuestion, results: list[SearchResult]) -> Passage | None:
        return select_passage(question.question, results, earlier_question=_earlier(question))

    def meaning(question: LabelledQuestion, results: list[SearchResult]) -> Passage | None:
        return select_passage(
            question.question,
            results,
            earlier_question=_earlier(question),
            similarity=search.similarities,
        )

    methods: dict[str, Callable[[LabelledQuestion, list[SearchResult]], Passage | None]] = {
        "the top search result's whole section": whole_top,
        "keywords and table ranges, best of the top 5": keywords,
        "keywords, ranges and meaning, best of the top 5 (default)": meaning,
    }
    covered = [question for question in questions if question.covered]
    found = {q.id: search.search(_query(q), k=k) for q in covered}
    rows: list[list[object]] = []
    for name, choose in methods.items():
        passages = [choose(question, found[question.id]) for question in covered]
        holding = [
            passage is not None and _holds_facts(question, passage.markdown)
            for question, passage in zip(covered, passages, strict=True)
        ]
        sizes = [len(passage.markdown) for passage in passages if passage is not None]
        rows.append([name, _share(holding), statistics.mean(sizes) if sizes else 0.0])
    anywhere = [
        any(_holds_facts(question, result.text) for result in found[question.id])
        for question in covered
    ]
    rows.append([f"any of the top {k} sections, whole (the ceiling)", _share(anywhere), "-"])
    return rows


def _coverage_table(
    search: PolicySearch, questions: Sequence[LabelledQuestion], k: int
) -> list[list[object]]:
    """What refusing below a relevance threshold would do to covered and uncovered questions."""
    # As the assistant measures it: the closest of the results, wherever fusion ranked it.
    best = {q.id: max((r.relevance for r in search.search(_query(q), k=k)), default=0.0)
            for q in questions}  # fmt: skip
    covered = [q for q in questions if q.covered]
    uncovered = [q for q in questions if not q.covered]
    return [
        [
            threshold,
            _share(best[q.id] < threshold for q in covered),
            sum(best[q.id] >= threshold for q in uncovered),
            len(uncovered),
        ]
        for threshold in RELEVANCE_THRESHOLDS
    ]


def _result(
    reports: dict[str, AnswerQualityReport],
    passage_rows: list[list[object]],
    coverage_rows: list[list[object]],
    questions: Sequence[LabelledQuestion],
    args: argparse.Namespace,
) -> BenchResult:
    defaults = reports["defaults"]
    columns = ["measure", "shown to people", "model's own text"]
    figures: list[Figures] = [defaults.shown, defaults.generated]
    if "previous prompt and decoding" in reports:
        columns.append("model's text, previous prompt and decoding")
        figures.append(reports["previous prompt and decoding"].generated)
    rows: list[list[object]] = [
        ["expected facts present (covered)", *(f.facts_present for f in figures)],
        ["expected facts found (all facts)", *(f.facts_recall for f in figures)],
        ["answers with unsupported claims", *(f.unsupported for f in figures)],
        ["answers repeating a sentence", *(f.repeating for f in figures)],
        ["covered questions refused", *(f.covered_refused for f in figures)],
        ["uncovered questions answered", *(f.uncovered_answered for f in figures)],
    ]
    timing = [
        ["seconds to the final text, median", *(r.median_seconds for r in reports.values())],
        ["seconds to the final text, p95", *(r.p95_seconds for r in reports.values())],
    ]
    outcomes = sorted({o for r in reports.values() for o in r.verification})
    verification = [[o, *(r.verification.get(o, 0) for r in reports.values())] for o in outcomes]
    covered, uncovered = defaults.covered, defaults.uncovered
    return BenchResult(
        name="answers",
        title="Answer quality on the labelled set (dispatchbot evaluate answers)",
        tables=[
            Table(
                f"What people see and what the model wrote ({covered} covered, "
                f"{uncovered} uncovered questions; {defaults.adapter or defaults.model})",
                columns,
                rows,
            ),
            Table("Time per answer (s)", ["measure", *reports], timing),
            Table("Verification outcomes (answers)", ["outcome", *reports], verification),
            Table(
                "Choosing the policy's words to quote (covered questions, no model)",
                ["method", "holds every expected fact", "mean characters"],
                passage_rows,
            ),
            Table(
                "Refusing below a relevance threshold (the best source's cosine)",
                ["threshold", "covered refused", "uncovered answered", "uncovered"],
                coverage_rows,
            ),
        ],
        findings={
            "facts_present_shown": defaults.shown.facts_present,
            "facts_present_model": defaults.generated.facts_present,
            "unsupported_shown": defaults.shown.unsupported,
            "repeating_shown": defaults.shown.repeating,
            "covered_refused_shown": defaults.shown.covered_refused,
            "uncovered_answered_shown": defaults.shown.uncovered_answered,
            "median_seconds": defaults.median_seconds,
            "p95_seconds": defaults.p95_seconds,
        },
        config={
            "questions": len(questions),
            "file": str(args.file),
            "quick": bool(args.quick),
            "model": defaults.model,
            "adapter": defaults.adapter,
            "llm_url": args.llm_url or "a vLLM of the bench's own (bench.local_model)",
            "previous_prompt_and_decoding": EARLIER_DECODING,
            "answers": [asdict(answer) for answer in defaults.answers],
        },
        notes=[
            "Shown to people: the answer's text and the policy's own words under it; an answer "
            "that failed verification shows the policy's words alone.",
            "The model's own text is scored before verification: that is what training raises.",
            "Facts count when every expected fact (any accepted variant) is present, after "
            "normalising numbers, units and case.",
        ],
    )


def _query(question: LabelledQuestion) -> str:
    earlier = _earlier(question)
    return f"{earlier}\n{question.question}" if earlier else question.question


def _earlier(question: LabelledQuestion) -> str | None:
    return question.thread[-1] if question.thread else None


def _holds_facts(question: LabelledQuestion, text: str) -> bool:
    from serving.claims import contains_fact

    return all(contains_fact(text, variants) for variants in question.facts)


def _share(flags: Iterable[bool]) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else 0.0
