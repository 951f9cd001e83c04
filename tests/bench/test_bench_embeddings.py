"""The embeddings benchmark at its tiniest: torch against ONNX int8, tables and JSON."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from bench_support import part_parser, run_part

import bench.embeddings as embeddings
from bench.report import BenchResult, write_result

# A benchmark run (every backend exported, then timed): the full tier only.
pytestmark = pytest.mark.slow

BACKENDS = ["torch", "onnx-int8"]


@pytest.fixture(scope="module")
def result() -> BenchResult:
    return run_part(embeddings, ["--backends", ",".join(BACKENDS), "--texts", "4"])


def _rows(result: BenchResult, title_start: str) -> list[dict[str, Any]]:
    (table,) = [table for table in result.tables if table.title.startswith(title_start)]
    return [dict(zip(table.columns, row, strict=True)) for row in table.rows]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_speed_has_a_row_per_backend_with_positive_figures(result: BenchResult) -> None:
    rows = _rows(result, "Speed")

    assert [row["backend"] for row in rows] == BACKENDS
    for row in rows:
        assert list(row) == list(embeddings.SPEED_COLUMNS)
        assert all(_finite(value) and value > 0 for key, value in row.items() if key != "backend")
    assert rows[0]["docs/s vs torch"] == rows[0]["queries/s vs torch"] == 1


def test_quality_compares_with_torch_and_scores_recall(result: BenchResult) -> None:
    torch_row, int8_row = _rows(result, "Agreement")

    assert (torch_row["max 1-cos"], torch_row["max |diff|"]) == (0, 0)
    assert 0 < int8_row["mean 1-cos"] <= int8_row["max 1-cos"] < 0.05
    for row in (torch_row, int8_row):
        scores = [value for key, value in row.items() if "recall" in key or "MRR" in key]
        assert len(scores) == 5
        assert all(_finite(value) and 0 <= value <= 1 for value in scores)


def test_findings_give_same_run_ratios_and_whether_recall_holds(result: BenchResult) -> None:
    assert set(result.findings) == {
        "onnx-int8 docs/s vs torch",
        "onnx-int8 queries/s vs torch",
        "onnx-int8 recall@5 holds",
    }
    assert isinstance(result.findings["onnx-int8 recall@5 holds"], bool)


def test_the_json_round_trips(result: BenchResult, tmp_path: Path) -> None:
    path = write_result(result, time.time(), tmp_path)

    written = json.loads(path.read_text())
    assert path.name == "embeddings.json"
    assert [table["title"] for table in written["tables"]] == [t.title for t in result.tables]
    assert written["tables"][0]["rows"][1][0] == "onnx-int8"
    assert written["config"]["backends"] == BACKENDS
    assert written["machine"]["packages"]["onnxruntime"]


def test_unknown_backends_are_refused() -> None:
    with pytest.raises(SystemExit):
        part_parser(embeddings).parse_args(["--backends", "torch,tensorrt"])
