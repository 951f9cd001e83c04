"""The answer-quality benchmark at its tiniest, against the session's vLLM: every table filled,
the figures in range, and JSON a reader can load."""

from __future__ import annotations

import json
from pathlib import Path

from bench_support import run_part
from vllm_support import RunningServer

import bench.answer_quality as answers
from bench.report import write_result


def test_a_few_questions_fill_every_table(vllm_server: RunningServer, tmp_path: Path) -> None:
    result = run_part(
        answers, ["--llm-url", vllm_server.base_url, "--questions", "3", "--no-earlier"]
    )

    quality, timing, outcomes, passages, coverage = result.tables
    measures = {row[0]: row[1:] for row in quality.rows}
    assert list(quality.columns) == ["measure", "shown to people", "model's own text"]
    assert 0 <= measures["expected facts present (covered)"][0] <= 1
    assert measures["answers with unsupported claims"][0] == 0  # nothing unchecked is shown
    assert all(seconds > 0 for _, seconds in timing.rows)
    assert sum(count for _, count in outcomes.rows) == 3
    assert [row[0] for row in passages.rows][-1].startswith("any of the top")
    assert all(0 <= row[1] <= 1 for row in passages.rows)
    assert [row[0] for row in coverage.rows] == list(answers.RELEVANCE_THRESHOLDS)
    assert result.config["questions"] == 3
    assert len(result.config["answers"]) == 3

    written = json.loads(write_result(result, 0.0, tmp_path).read_text("utf-8"))
    assert written["findings"]["unsupported_shown"] == 0
