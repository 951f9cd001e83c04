"""The serving benchmark at its tiniest, against the session's vLLM: every level for the base
model and a runtime-loaded LoRA adapter, exact token counts, and JSON a reader can load."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from bench_support import run_part
from vllm_support import RunningServer

import bench.serving_concurrency as serving
from bench.report import write_result
from serving.vllm_admin import list_served_models

LEVELS = (1, 2)
REQUESTS = 2
MAX_TOKENS = 3


def test_each_level_for_base_and_adapter(vllm_server: RunningServer, tmp_path: Path) -> None:
    served_before = list_served_models(vllm_server.base_url)
    result = run_part(
        serving,
        [
            "--llm-url",
            vllm_server.base_url,
            "--concurrency",
            ",".join(map(str, LEVELS)),
            "--requests",
            str(REQUESTS),
            "--max-tokens",
            str(MAX_TOKENS),
        ],
    )

    # The adapter loaded for the run is gone again: other tests list served models exactly.
    assert list_served_models(vllm_server.base_url) == served_before
    (table,) = result.tables  # --llm-url: no prefix-caching comparison
    columns = list(table.columns)
    rows = [dict(zip(columns, row, strict=True)) for row in table.rows]
    assert [(row["model"], row["concurrent"]) for row in rows] == [
        (model, level) for model in ("base", "LoRA") for level in LEVELS
    ]
    for row in rows:
        assert row["prefix cache"] == "on"  # the fixture's server says so in its metrics
        assert row["requests"] == REQUESTS
        assert row["tokens"] == REQUESTS * MAX_TOKENS  # ignore_eos: never a short answer
        for column in columns[5:]:
            assert math.isfinite(row[column]), column
            assert row[column] >= 0, column
        for column in ("wall s", "tokens/s", "requests/s", "latency p50 ms", "TTFT p50 ms"):
            assert row[column] > 0, column
        assert row["TTFT p50 ms"] <= row["latency p50 ms"]
    assert set(result.findings) == {
        "base: tokens/s at 2 vs 1 concurrent",
        "LoRA: tokens/s at 2 vs 1 concurrent",
        "LoRA vs base tokens/s at 1 concurrent",
        "LoRA vs base tokens/s at 2 concurrent",
    }
    assert all(value > 0 for value in result.findings.values())
    assert 600 <= result.config["prompt_tokens"]["p50"] <= 1_300  # production-sized prompts
    assert result.config["shared_prefix_tokens"] > 0

    written = json.loads(write_result(result, time.time(), tmp_path).read_text("utf-8"))
    assert written["name"] == "serving"
    assert written["findings"] == result.findings
    assert written["tables"][0]["columns"] == columns
    assert written["tables"][0]["rows"] == [list(row) for row in table.rows]
    assert written["machine"]["cores_usable"] >= 1
