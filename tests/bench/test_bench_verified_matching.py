"""The verified-matching benchmark at --quick: its tables and JSON, and the thresholds the
bot uses holding precision of at least 0.95 on examples/eval/paraphrases.jsonl."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from bench_support import run_part

import bench.verified_matching as verified_matching
from bench.report import BenchResult, write_result
from serving.verified_reuse import REUSE_SIMILARITY, SOURCE_SIMILARITY

# A benchmark run (the whole threshold sweep): the full tier only.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result() -> BenchResult:
    return run_part(verified_matching, ["--matches", "5"])


def _rows(result: BenchResult, title_start: str) -> list[dict[str, Any]]:
    (table,) = [table for table in result.tables if table.title.startswith(title_start)]
    return [dict(zip(table.columns, row, strict=True)) for row in table.rows]


def _fraction(value: Any) -> bool:
    return isinstance(value, int | float) and 0 <= value <= 1


def test_the_sweep_has_a_row_per_threshold_with_both_rules(result: BenchResult) -> None:
    rows = _rows(result, "Threshold sweep")

    assert [row["threshold"] for row in rows] == list(verified_matching.THRESHOLDS)
    assert rows[0]["threshold"] == 0.60
    assert rows[-1]["threshold"] == 0.95
    for row in rows:
        assert list(row) == list(verified_matching.SWEEP_COLUMNS)
        assert _fraction(row["recall"])
        assert _fraction(row["recall (similarity only)"])
        # The figures rule only ever holds answers back.
        assert row["recall"] <= row["recall (similarity only)"]
    assert [row["reused"] for row in rows] == sorted((row["reused"] for row in rows), reverse=True)


def test_the_chosen_threshold_keeps_precision_and_the_bot_uses_it(result: BenchResult) -> None:
    findings = result.findings
    chosen = findings["chosen threshold"]

    assert chosen in verified_matching.THRESHOLDS
    assert findings["precision at chosen"] >= verified_matching.TARGET_PRECISION
    assert 0 < findings["recall at chosen"] <= 1
    assert findings["REUSE_SIMILARITY"] == REUSE_SIMILARITY == chosen
    assert findings["precision at REUSE_SIMILARITY"] >= verified_matching.TARGET_PRECISION
    # What the figures rule buys: the same recall, fewer wrong answers.
    assert findings["recall at chosen, similarity only"] == findings["recall at chosen"]
    assert findings["precision at chosen, similarity only"] < findings["precision at chosen"]
    # A resolved question asked again is answered from its verified answer, every time.
    assert findings["exact question answered"] == 1
    assert _fraction(findings["exact + all paraphrases answered"])


def test_the_source_threshold_sits_below_the_reuse_one(result: BenchResult) -> None:
    findings = result.findings

    assert findings["SOURCE_SIMILARITY"] == SOURCE_SIMILARITY < REUSE_SIMILARITY
    assert findings["suggested source threshold"] == SOURCE_SIMILARITY
    assert findings["source recall at SOURCE_SIMILARITY"] >= verified_matching.SOURCE_RECALL
    assert _fraction(findings["source own topic share at SOURCE_SIMILARITY"])


def test_every_saved_question_has_its_row(result: BenchResult) -> None:
    rows = _rows(result, "Per saved question")

    assert len(rows) == result.config["saved_questions"] >= 30
    for row in rows:
        answered, total = row["paraphrases answered"].split("/")
        assert int(total) == 10
        assert 0 <= int(answered) <= 10
        assert 6 <= int(row["near misses answered"].split("/")[1]) <= 10


def test_one_match_is_timed_within_the_budget(result: BenchResult) -> None:
    rows = _rows(result, "One match")

    assert [row["one match"] for row in rows] == ["search and rules", "embedding, search and rules"]
    for row in rows:
        assert row["n"] == 5
        assert all(math.isfinite(row[key]) and row[key] > 0 for key in ("p50 ms", "p95 ms"))
    assert result.findings["match within 300 ms"] is True


def test_the_json_round_trips(result: BenchResult, tmp_path: Path) -> None:
    path = write_result(result, time.time(), tmp_path)

    written = json.loads(path.read_text())
    assert path.name == "verified-matching.json"
    assert [table["title"] for table in written["tables"]] == [t.title for t in result.tables]
    assert written["findings"]["chosen threshold"] == result.findings["chosen threshold"]
    assert (
        written["config"]["pairs"]
        == written["config"]["paraphrases"] + (written["config"]["near_misses"])
    )


def test_a_set_without_labels_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "pairs.jsonl"
    broken.write_text('{"saved": "who approves a 30k load", "question": "30k load?"}\n')

    with pytest.raises(ValueError, match="match"):
        verified_matching.read_pairs(broken)
