"""The Slack parts of the benchmark (`slack`, `answer`) at their smallest: a real
`dispatchbot run --mode http` process, the mock Web API and the session's vLLM.

They check the shape a reader relies on (rows, columns, figures that are positive and
finite, every answer completed, JSON that reads back), never how fast anything is.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bench_support import run_part
from vllm_support import RunningServer

from bench import answer_path, slack_load
from bench.report import BenchResult, write_result

# One short policy and short answers: the bot starts, ingests and answers in seconds.
POLICY = Path(__file__).resolve().parents[2] / "examples" / "policies" / "load-approval.md"


def _run(module: ModuleType, vllm_server: RunningServer, *options: str) -> BenchResult:
    shared = ["--llm-url", vllm_server.base_url, "--max-tokens", "16", "--policies", str(POLICY)]
    return run_part(module, [*options, *shared])


def _reads_back(result: BenchResult, tmp_path: Path) -> dict[str, Any]:
    document = json.loads(write_result(result, time.time(), tmp_path).read_text("utf-8"))
    assert document["name"] == result.name
    read_back = [
        [[_as_json(v) for v in row] for row in table["rows"]] for table in document["tables"]
    ]
    assert read_back == [
        [[_as_json(v) for v in row] for row in table.rows] for table in result.tables
    ]
    return document


def _as_json(value: object) -> object:
    """A missing figure (NaN) reads back as NaN or null; either stands for "none"."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_slack_load_times_acks_of_both_waves_and_completes_every_answer(
    vllm_server: RunningServer, tmp_path: Path
) -> None:
    result = _run(slack_load, vllm_server, "--loads", "1")

    acks, answers = result.tables
    assert acks.columns[:3] == ["N", "wave", "acks"]
    assert [row[:3] for row in acks.rows] == [[1, "idle bot", 1], [1, "during generation", 1]]
    assert all(_positive(figure) for row in acks.rows for figure in row[3:8])  # acks, in Bolt
    [level] = answers.rows
    assert level[:4] == [1, 2, 2, 0]  # N, sent, completed, failed
    assert _positive(level[4])  # answers/min
    assert answers.columns[10:12] == ["calls/answer max", "429s"]
    assert level[11] == 0  # within Slack's rate tiers
    assert result.findings["rate_limited_calls"] == 0
    assert _positive(result.findings["ack_p99_ms_during_generation_at_n1"])
    assert result.findings["goal_p99_ack_under_300ms_at_n50"].startswith("not judged")
    assert result.findings["bot_peak_rss_mib"] > 100  # the embedder alone is more
    document = _reads_back(result, tmp_path)
    assert document["config"]["llm_max_tokens"] == 16


def test_answer_path_splits_an_answer_into_stages(
    vllm_server: RunningServer, tmp_path: Path
) -> None:
    result = _run(answer_path, vllm_server, "--questions", "1")

    milestones, stages = result.tables
    assert [row[0] for row in milestones.rows] == [
        "ack (HTTP 200)",
        "first visible sign (status, or placeholder, at Slack)",
        "first token from the model (in the bot)",
        "first answer words at Slack",
        "final message at Slack",
        "model TTFT (request -> first token)",
    ]
    assert all(_positive(figure) for row in milestones.rows for figure in row[1:])
    by_stage = {row[0]: row for row in stages.rows}
    for stage in ("retrieval", answer_path.MODEL_STAGE, answer_path.SLACK_STAGE):
        assert _positive(by_stage[stage][1]), stage
    assert by_stage[answer_path.TOTAL][3] == 100.0
    assert result.findings["slowest_stage"] in by_stage
    assert result.findings["slack_calls_per_answer_p50"] >= 2  # the sign and the final message
    _reads_back(result, tmp_path)
