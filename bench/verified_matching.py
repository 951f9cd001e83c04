"""Verified-answer matching: which new questions a person's verified answer answers as it stands.

On the labelled pairs of examples/eval/paraphrases.jsonl (a saved question, a new question,
and whether the saved question's verified answer answers the new one as it stands):

- Similarity as the product computes it: each saved question embedded once with
  `encode_documents`, as `retrieval.verified.index_verified` does, each new question with
  `encode_query`, as the bot embeds a question; the cosine of the two unit vectors.
- `serving.verified_reuse.reusable` (similarity and the same figures) over thresholds from
  0.60 to 0.95: precision, recall and F1 at each, and the same for similarity alone (what
  the figures rule buys). The chosen threshold is the one with precision of at least 0.95
  (a wrong verified answer is worse than none) and the highest recall, the higher
  threshold on a tie.
- Coverage: the saved questions whose exact question asked again and all their paraphrases
  would be answered from the verified answer.
- As the assistant answers: each new question against every saved question of the set,
  the closest one only, given when `reusable`; this also shows answers given from another
  saved question than the one a question was written against.
- Source threshold (`informs`, similarity alone): the highest at which 95% of the
  paraphrases still reach the model as a source, with the share of the sources the
  assistant would give (the closest saved question of all) that are on the new question's
  own topic rather than another's.
- Time of one match: the saved questions indexed in a Qdrant Edge shard with
  `index_verified`, then `find_verified` (the closest one, as the assistant asks) and
  `reusable` on it, without and with embedding the question.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report import REPO_ROOT, BenchResult, Table, latency_summary

if TYPE_CHECKING:
    import numpy as np

    from retrieval.embedding import Embedder
    from retrieval.verified import VerifiedEntry, VerifiedMatch

HELP = (
    "Verified answers: precision and recall of reusing a verified answer for a paraphrase "
    "by threshold, with and without the figures rule, on examples/eval/paraphrases.jsonl, "
    "and the time of one match"
)
LABELLED_SET = REPO_ROOT / "examples" / "eval" / "paraphrases.jsonl"
THRESHOLDS = tuple(round(0.60 + step / 100, 2) for step in range(36))  # 0.60 ... 0.95
EXTRA_PHRASINGS = (0, 1, 2, 3)
SOURCE_THRESHOLDS = tuple(round(0.30 + step / 100, 2) for step in range(66))  # 0.30 ... 0.95
TARGET_PRECISION = 0.95
SOURCE_RECALL = 0.95
BUDGET_MS = 300.0
MATCHES, QUICK_MATCHES = 200, 20
SEARCH_LIMIT = 1  # the assistant weighs the closest verified answer only
SWEEP_COLUMNS = (
    "threshold",
    "precision",
    "recall",
    "F1",
    "reused",
    "wrong",
    "precision (similarity only)",
    "recall (similarity only)",
    "F1 (similarity only)",
)
CHOSEN_COLUMNS = ("rule", "threshold", "precision", "recall", "F1", "right", "wrong", "missed")
SAVED_COLUMNS = (
    "saved question",
    "exact answered",
    "paraphrases answered",
    "near misses answered",
    "lowest paraphrase similarity",
)
BOT_COLUMNS = ("questions", "right", "wrong (labelled)", "from another saved question", "none")
SOURCE_COLUMNS = ("threshold", "recall", "precision", "sources given", "own topic share")
TIMING_COLUMNS = ("one match", "n", "p50 ms", "p95 ms", "max ms", f"within {BUDGET_MS:.0f} ms")


@dataclass(frozen=True)
class Pair:
    saved: str
    question: str
    match: bool


@dataclass(frozen=True)
class Score:
    threshold: float
    right: int
    wrong: int
    missed: int

    @property
    def precision(self) -> float:
        reused = self.right + self.wrong
        return self.right / reused if reused else math.nan

    @property
    def recall(self) -> float:
        expected = self.right + self.missed
        return self.right / expected if expected else math.nan

    @property
    def f1(self) -> float:
        precision, recall = self.precision, self.recall
        if math.isnan(precision) or not precision + recall:
            return math.nan
        return 2 * precision * recall / (precision + recall)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        type=Path,
        default=LABELLED_SET,
        help="labelled pairs, one JSON object a line: saved, question, match "
        f"(default {LABELLED_SET.relative_to(REPO_ROOT)})",
    )
    parser.add_argument(
        "--matches",
        type=int,
        default=None,
        help=f"matches timed (default {MATCHES}, {QUICK_MATCHES} with --quick; the set is "
        "always scored whole, it takes seconds)",
    )


def read_pairs(path: Path) -> list[Pair]:
    pairs = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not (
            isinstance(row.get("saved"), str)
            and isinstance(row.get("question"), str)
            and isinstance(row.get("match"), bool)
        ):
            raise ValueError(f"{path}:{number}: needs saved and question (text), match (bool)")
        pairs.append(Pair(row["saved"], row["question"], row["match"]))
    if not any(pair.match for pair in pairs) or all(pair.match for pair in pairs):
        raise ValueError(f"{path}: needs pairs that match and pairs that do not")
    return pairs


def run(args: argparse.Namespace) -> BenchResult:
    import numpy as np

    from retrieval.embedding import load_embedder_for
    from serving.verified_reuse import REUSE_SIMILARITY, SOURCE_SIMILARITY
    from store.settings import Settings

    settings = Settings(_env_file=None)  # a developer's .env must not change what is measured
    matches = args.matches or (QUICK_MATCHES if args.quick else MATCHES)
    if matches < 1:
        raise ValueError("--matches must be at least 1")
    pairs = read_pairs(args.set)
    embedder = load_embedder_for(settings)
    saved = list(dict.fromkeys(pair.saved for pair in pairs))
    questions = list(dict.fromkeys(pair.question for pair in pairs))
    saved_vectors = np.array(
        [embedder.encode_documents([text], batch_size=1)[0] for text in saved], dtype=np.float64
    )
    question_vectors = np.array(
        [embedder.encode_query(text) for text in [*questions, *saved]], dtype=np.float64
    )
    # Rows: the new questions, then each saved question asked again; columns: saved questions.
    similarity = question_vectors @ saved_vectors.T
    row = {text: index for index, text in enumerate(questions)}
    column = {text: index for index, text in enumerate(saved)}
    pair_similarity = [float(similarity[row[p.question], column[p.saved]]) for p in pairs]

    sweep = [_score(pairs, pair_similarity, t, figures_rule=True) for t in THRESHOLDS]
    similarity_only = [_score(pairs, pair_similarity, t, figures_rule=False) for t in THRESHOLDS]
    chosen = _choose(sweep)
    chosen_without = _choose(similarity_only)
    configured = _score(pairs, pair_similarity, REUSE_SIMILARITY, figures_rule=True)
    at = chosen.threshold if chosen else REUSE_SIMILARITY
    exact_similarity = [float(similarity[len(questions) + i, i]) for i in range(len(saved))]
    per_saved = _per_saved(pairs, pair_similarity, saved, exact_similarity, at)
    wrong = [
        f"{p.question!r} answered from {p.saved!r} (similarity {s:.3f})"
        for p, s in zip(pairs, pair_similarity, strict=True)
        if not p.match and _reuses(figures_rule=True)(p.question, _match(p.saved, s), at)
    ]
    bot = _as_the_bot_answers(pairs, questions, saved, similarity, at)
    source = [
        _source_score(pairs, pair_similarity, similarity, questions, saved, t)
        for t in SOURCE_THRESHOLDS
    ]
    source_chosen = max(
        (entry for entry in source if entry["recall"] >= SOURCE_RECALL),
        key=lambda entry: entry["threshold"],
        default=None,
    )
    configured_source = _source_score(
        pairs, pair_similarity, similarity, questions, saved, SOURCE_SIMILARITY
    )
    timing = _time_matches(embedder, saved, questions, matches)
    phrasings = [_with_phrasings(pairs, embedder, extra, at) for extra in EXTRA_PHRASINGS]
    return _result(
        phrasings=phrasings,
        pairs=pairs,
        saved=saved,
        sweep=sweep,
        similarity_only=similarity_only,
        chosen=chosen,
        chosen_without=chosen_without,
        configured=configured,
        at=at,
        per_saved=per_saved,
        wrong=wrong,
        bot=bot,
        source=source,
        source_chosen=source_chosen,
        configured_source=configured_source,
        timing=timing,
        settings_model=f"{settings.embedding_model} ({settings.embedding_backend})",
        set_path=args.set,
        matches=matches,
    )


def _with_phrasings(
    pairs: Sequence[Pair], embedder: Embedder, extra: int, threshold: float
) -> dict[str, Any]:
    """Precision and recall when the person who saved each answer also wrote `extra` other
    ways of asking it (a line each in the modal): the set's first `extra` paraphrases of it
    become phrasings, and are left out of the pairs scored."""
    from retrieval.verified import VerifiedMatch
    from serving.verified_reuse import reusable

    phrasings: dict[str, list[str]] = {}
    for pair in pairs:
        given = phrasings.setdefault(pair.saved, [pair.saved])
        if pair.match and len(given) <= extra:
            given.append(pair.question)
    scored = [p for p in pairs if not (p.match and p.question in phrasings[p.saved][1:])]
    vectors = {
        text: embedder.encode_documents([text], batch_size=1)[0]
        for given in phrasings.values()
        for text in given
    }
    right = wrong = missed = 0
    for pair in scored:
        query = embedder.encode_query(pair.question)
        closest = max(
            (sum(q * v for q, v in zip(query, vectors[text], strict=True)), text)
            for text in phrasings[pair.saved]
        )
        match = VerifiedMatch(_entry(0, "\n".join(phrasings[pair.saved])), closest[1], closest[0])
        reused = reusable(pair.question, match, threshold)
        right += reused and pair.match
        wrong += reused and not pair.match
        missed += not reused and pair.match
    score = Score(threshold, right, wrong, missed)
    return {
        "extra phrasings": extra,
        "pairs": len(scored),
        "precision": score.precision,
        "recall": score.recall,
        "wrong": wrong,
    }


def _match(saved: str, similarity: float) -> VerifiedMatch:
    """The match the store would return for `saved` at this similarity."""
    from retrieval.verified import VerifiedMatch

    return VerifiedMatch(_entry(0, saved), saved, similarity)


def _entry(verified_id: int, question: str) -> VerifiedEntry:
    """A verified answer to `question`, for everyone: only its question is read here."""
    from retrieval.verified import VerifiedEntry

    return VerifiedEntry(
        verified_id=verified_id,
        question=question,
        answer="(the verified answer)",
        author="bench",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        audience="all",
        policy_refs=(),
    )


def _reuses(figures_rule: bool) -> Callable[[str, VerifiedMatch, float], bool]:
    from serving.verified_reuse import informs, reusable

    if figures_rule:
        return reusable
    return lambda _question, match, threshold: informs(match, threshold)


def _score(
    pairs: Sequence[Pair], similarity: Sequence[float], threshold: float, *, figures_rule: bool
) -> Score:
    reuses = _reuses(figures_rule)
    right = wrong = missed = 0
    for pair, value in zip(pairs, similarity, strict=True):
        reused = reuses(pair.question, _match(pair.saved, value), threshold)
        if reused and pair.match:
            right += 1
        elif reused:
            wrong += 1
        elif pair.match:
            missed += 1
    return Score(threshold, right, wrong, missed)


def _choose(scores: Sequence[Score]) -> Score | None:
    """Precision at least the target, then the highest recall, then the higher threshold."""
    good = [s for s in scores if not math.isnan(s.precision) and s.precision >= TARGET_PRECISION]
    return max(good, key=lambda s: (s.recall, s.threshold), default=None)


def _per_saved(
    pairs: Sequence[Pair],
    similarity: Sequence[float],
    saved: Sequence[str],
    exact_similarity: Sequence[float],
    threshold: float,
) -> list[dict[str, Any]]:
    from serving.verified_reuse import reusable

    rows = []
    for text, exact in zip(saved, exact_similarity, strict=True):
        own = [(p, s) for p, s in zip(pairs, similarity, strict=True) if p.saved == text]
        paraphrases = [(p, s) for p, s in own if p.match]
        misses = [(p, s) for p, s in own if not p.match]
        rows.append(
            {
                "saved": text,
                "exact": reusable(text, _match(text, exact), threshold),
                "paraphrases": len(paraphrases),
                "paraphrases answered": sum(
                    reusable(p.question, _match(text, s), threshold) for p, s in paraphrases
                ),
                "near misses": len(misses),
                "near misses answered": sum(
                    reusable(p.question, _match(text, s), threshold) for p, s in misses
                ),
                "lowest paraphrase similarity": min((s for _, s in paraphrases), default=math.nan),
            }
        )
    return rows


def _as_the_bot_answers(
    pairs: Sequence[Pair],
    questions: Sequence[str],
    saved: Sequence[str],
    similarity: np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """Each new question against all saved questions, as the assistant asks: the closest
    verified answer only, given when `reusable`."""
    from serving.verified_reuse import reusable

    labels = {(p.question, p.saved): p.match for p in pairs}
    outcome = {"right": 0, "wrong": 0, "other": 0, "none": 0}
    others = []
    for index, question in enumerate(questions):
        nearest = int(similarity[index].argmax())
        text = saved[nearest]
        if not reusable(question, _match(text, float(similarity[index, nearest])), threshold):
            outcome["none"] += 1
        elif (question, text) in labels:
            outcome["right" if labels[(question, text)] else "wrong"] += 1
        elif question.casefold() == text.casefold():
            outcome["right"] += 1  # a near miss of one saved question that is another one
        else:
            outcome["other"] += 1
            others.append(f"{question!r} answered from {text!r}")
    return {"questions": len(questions), **outcome, "examples": others}


def _source_score(
    pairs: Sequence[Pair],
    pair_similarity: Sequence[float],
    similarity: np.ndarray,
    questions: Sequence[str],
    saved: Sequence[str],
    threshold: float,
) -> dict[str, Any]:
    """Paraphrases kept as sources; and, as the assistant asks (the closest verified answer
    of all, a source when `informs`), the share of the sources given that are on the new
    question's own topic: the saved question it was written against."""
    from serving.verified_reuse import informs

    kept = [
        informs(_match(p.saved, s), threshold) for p, s in zip(pairs, pair_similarity, strict=True)
    ]
    right = sum(k and p.match for k, p in zip(kept, pairs, strict=True))
    expected = sum(p.match for p in pairs)
    own: dict[str, set[str]] = {}
    for pair in pairs:
        own.setdefault(pair.question, set()).add(pair.saved)
    given = own_topic = 0
    for index, question in enumerate(questions):
        nearest = int(similarity[index].argmax())
        text = saved[nearest]
        if informs(_match(text, float(similarity[index, nearest])), threshold):
            given += 1
            own_topic += text in own[question] or text.casefold() == question.casefold()
    return {
        "threshold": threshold,
        "recall": right / expected,
        "precision": right / sum(kept) if sum(kept) else math.nan,
        "sources given": given / len(questions),
        "own topic share": own_topic / given if given else math.nan,
    }


def _time_matches(
    embedder: Embedder, saved: Sequence[str], questions: Sequence[str], count: int
) -> dict[str, dict[str, float]]:
    """One match as the bot makes it, on the saved questions in a Qdrant Edge shard."""
    from retrieval.edge_store import EdgeStore
    from retrieval.store import ClusterLayout
    from retrieval.verified import find_verified, index_verified
    from serving.verified_reuse import reusable

    today = datetime.now(UTC).date()
    excluded: list[float] = []
    included: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-verified-") as folder:
        store = EdgeStore(Path(folder), "policies")
        try:
            store.create(embedder.dimension, embedder.name, ClusterLayout())
            for number, text in enumerate(saved, start=1):
                index_verified(store, embedder, _entry(number, text))

            def match(question: str, vector: list[float]) -> bool:
                hits = find_verified(store, vector, day=today, audiences=None, limit=SEARCH_LIMIT)
                return any(reusable(question, hit) for hit in hits)

            for question in questions[:3]:  # warm up: first calls load and allocate
                match(question, embedder.encode_query(question))
            for index in range(count):
                question = questions[index % len(questions)]
                started = time.perf_counter()
                vector = embedder.encode_query(question)
                embedded = time.perf_counter()
                match(question, vector)
                done = time.perf_counter()
                excluded.append((done - embedded) * 1000)
                included.append((done - started) * 1000)
        finally:
            store.close()
    return {
        "search and rules": latency_summary(excluded),
        "embedding, search and rules": latency_summary(included),
    }


def _score_row(rule: str, score: Score | None) -> list[Any]:
    if score is None:  # no threshold of the sweep reaches the target precision
        return [rule, *[math.nan] * (len(CHOSEN_COLUMNS) - 1)]
    return [
        rule,
        score.threshold,
        round(score.precision, 3),
        round(score.recall, 3),
        round(score.f1, 3),
        score.right,
        score.wrong,
        score.missed,
    ]


def _rounded(value: float) -> float:
    return value if math.isnan(value) else round(value, 3)


def _result(
    *,
    phrasings: Sequence[dict[str, Any]],
    pairs: Sequence[Pair],
    saved: Sequence[str],
    sweep: Sequence[Score],
    similarity_only: Sequence[Score],
    chosen: Score | None,
    chosen_without: Score | None,
    configured: Score,
    at: float,
    per_saved: Sequence[dict[str, Any]],
    wrong: Sequence[str],
    bot: dict[str, Any],
    source: Sequence[dict[str, Any]],
    source_chosen: dict[str, Any] | None,
    configured_source: dict[str, Any],
    timing: dict[str, dict[str, float]],
    settings_model: str,
    set_path: Path,
    matches: int,
) -> BenchResult:
    from serving.verified_reuse import REUSE_SIMILARITY, SOURCE_SIMILARITY

    sweep_rows = [
        [
            rule.threshold,
            _rounded(rule.precision),
            _rounded(rule.recall),
            _rounded(rule.f1),
            rule.right + rule.wrong,
            rule.wrong,
            _rounded(alone.precision),
            _rounded(alone.recall),
            _rounded(alone.f1),
        ]
        for rule, alone in zip(sweep, similarity_only, strict=True)
    ]
    same_point = next((s for s in similarity_only if s.threshold == at), None)
    chosen_rows = [
        _score_row("similarity + figures (chosen)", chosen),
        _score_row("similarity only, at the chosen threshold", same_point),
        _score_row("similarity only, its own best threshold", chosen_without),
        _score_row("similarity + figures, REUSE_SIMILARITY", configured),
    ]
    saved_rows = [
        [
            row["saved"],
            row["exact"],
            f"{row['paraphrases answered']}/{row['paraphrases']}",
            f"{row['near misses answered']}/{row['near misses']}",
            _rounded(row["lowest paraphrase similarity"]),
        ]
        for row in per_saved
    ]
    covered = [
        row["exact"] and row["paraphrases answered"] == row["paraphrases"] for row in per_saved
    ]
    source_rows = [
        [
            entry["threshold"],
            _rounded(entry["recall"]),
            _rounded(entry["precision"]),
            _rounded(entry["sources given"]),
            _rounded(entry["own topic share"]),
        ]
        for entry in source
        if entry["threshold"] <= 0.60 or entry["threshold"] in (0.70, 0.80, 0.90)
    ]
    timing_rows = [
        [
            name,
            summary["n"],
            round(summary["p50"], 2),
            round(summary["p95"], 2),
            round(summary["max"], 2),
            summary["p95"] <= BUDGET_MS,
        ]
        for name, summary in timing.items()
    ]
    full = timing["embedding, search and rules"]
    findings: dict[str, Any] = {
        "chosen threshold": chosen.threshold if chosen else None,
        "precision at chosen": _rounded(chosen.precision) if chosen else None,
        "recall at chosen": _rounded(chosen.recall) if chosen else None,
        "precision at chosen, similarity only": (
            _rounded(same_point.precision) if same_point else None
        ),
        "recall at chosen, similarity only": _rounded(same_point.recall) if same_point else None,
        "best threshold, similarity only": chosen_without.threshold if chosen_without else None,
        "recall at best threshold, similarity only": (
            _rounded(chosen_without.recall) if chosen_without else None
        ),
        "REUSE_SIMILARITY": REUSE_SIMILARITY,
        "precision at REUSE_SIMILARITY": _rounded(configured.precision),
        "recall at REUSE_SIMILARITY": _rounded(configured.recall),
        "exact question answered": _rounded(
            sum(row["exact"] for row in per_saved) / len(per_saved)
        ),
        "exact + all paraphrases answered": _rounded(sum(covered) / len(covered)),
        "bot: answered from another saved question": bot["other"],
        "bot: wrong (labelled)": bot["wrong"],
        "suggested source threshold": source_chosen["threshold"] if source_chosen else None,
        "SOURCE_SIMILARITY": SOURCE_SIMILARITY,
        "source recall at SOURCE_SIMILARITY": _rounded(configured_source["recall"]),
        "source precision at SOURCE_SIMILARITY": _rounded(configured_source["precision"]),
        "source own topic share at SOURCE_SIMILARITY": _rounded(
            configured_source["own topic share"]
        ),
        "recall with 3 more phrasings": _rounded(phrasings[-1]["recall"]),
        "precision with 3 more phrasings": _rounded(phrasings[-1]["precision"]),
        "match p95 ms, embedding excluded": round(timing["search and rules"]["p95"], 2),
        "match p95 ms, embedding included": round(full["p95"], 2),
        f"match within {BUDGET_MS:.0f} ms": full["p95"] <= BUDGET_MS,
    }
    notes = [
        "precision: of the new questions answered from the verified answer, the share it "
        "answers; recall: of the paraphrases, the share answered; wrong: near misses answered",
        "similarity only: `informs`' rule (the cosine alone), the figures rule left out",
        "sources given: share of the new questions whose closest saved question (of all) "
        "clears the threshold; own topic share: of those, the share where it is the saved "
        "question the new question was written against, the rest other topics put before "
        "the model",
        *(f"wrong at {at}: {example}" for example in wrong),
        *(f"answered from another saved question: {example}" for example in bot["examples"]),
    ]
    return BenchResult(
        name="verified-matching",
        title=f"Verified answers: reuse for paraphrases, {settings_model}",
        tables=[
            Table(
                f"Threshold sweep ({len(pairs)} labelled pairs, "
                f"{sum(p.match for p in pairs)} paraphrases, {len(saved)} saved questions)",
                SWEEP_COLUMNS,
                sweep_rows,
            ),
            Table(
                f"At the chosen threshold (precision >= {TARGET_PRECISION}, highest recall)",
                CHOSEN_COLUMNS,
                chosen_rows,
            ),
            Table(f"Per saved question at {at}", SAVED_COLUMNS, saved_rows),
            Table(
                f"As the bot answers at {at}: each new question against all {len(saved)} "
                "saved questions, the closest one given when reusable",
                BOT_COLUMNS,
                [[bot["questions"], bot["right"], bot["wrong"], bot["other"], bot["none"]]],
            ),
            Table(
                "Source threshold (`informs`, similarity only): paraphrases kept, and the "
                "closest saved question of all as a source: how often, how often on topic",
                SOURCE_COLUMNS,
                source_rows,
            ),
            Table(
                f"More ways of asking it, written by the person who saved it (at {at}; the "
                "paraphrases used as phrasings are not scored)",
                ["extra phrasings", "pairs", "precision", "recall", "wrong"],
                [
                    [
                        row["extra phrasings"],
                        row["pairs"],
                        _rounded(row["precision"]),
                        _rounded(row["recall"]),
                        row["wrong"],
                    ]
                    for row in phrasings
                ],
            ),
            Table(
                f"One match: {len(saved)} verified answers in Qdrant Edge, find_verified "
                f"(limit {SEARCH_LIMIT}) and reusable on its hit",
                TIMING_COLUMNS,
                timing_rows,
            ),
        ],
        findings=findings,
        config={
            "set": str(set_path),
            "pairs": len(pairs),
            "paraphrases": sum(p.match for p in pairs),
            "near_misses": sum(not p.match for p in pairs),
            "saved_questions": len(saved),
            "model": settings_model,
            "thresholds": [THRESHOLDS[0], THRESHOLDS[-1], 0.01],
            "target_precision": TARGET_PRECISION,
            "source_recall": SOURCE_RECALL,
            "matches_timed": matches,
            "budget_ms": BUDGET_MS,
        },
        notes=notes,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.verified_matching [--quick]`: this part alone, as `python -m bench`
    runs it (results in bench/results/, or bench/results/quick/ with --quick)."""
    from bench.report import RESULTS_DIR, print_result, write_result

    parser = argparse.ArgumentParser(prog="python -m bench.verified_matching", description=HELP)
    parser.add_argument("--quick", action="store_true", help="fewer matches timed")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON result")
    add_arguments(parser)
    args = parser.parse_args(argv)
    started = time.time()
    result = run(args)
    print_result(result)
    out = args.out or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    print(f"\nwritten: {write_result(result, started, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
